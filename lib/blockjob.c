/* libsnapmig — disks and block jobs of a running VM (see blockjob.h). */
#include "blockjob.h"

#include <string.h>

#include "json-util.h"

#define POLL_MS 20

static void
layer_free (gpointer p)
{
  SmBlockLayer *layer = p;

  g_free (layer->filename);
  g_free (layer->qemu_filename);
  g_free (layer->format);
  g_free (layer->node_name);
  g_free (layer->backing_file);
  g_free (layer);
}

void
sm_block_layer_free (SmBlockLayer *layer)
{
  layer_free (layer);
}

void
sm_block_disk_free (SmBlockDisk *disk)
{
  if (!disk)
    return;
  g_free (disk->device);
  g_free (disk->qdev);
  g_free (disk->node_name);
  g_free (disk->format);
  g_free (disk->file);
  g_free (disk->io_status);
  g_ptr_array_unref (disk->chain);
  g_free (disk);
}

static char *
dup_nonempty (const char *s)
{
  return s && *s ? g_strdup (s) : NULL;
}

const char *
sm_block_disk_id (const SmBlockDisk *disk)
{
  return disk->device ? disk->device : disk->node_name;
}

const char *
sm_block_disk_top (const SmBlockDisk *disk)
{
  if (disk->chain->len == 0)
    return NULL;
  return ((SmBlockLayer *) disk->chain->pdata[0])->filename;
}

const SmBlockLayer *
sm_block_disk_layer (const SmBlockDisk *disk, guint i)
{
  return i < disk->chain->len ? disk->chain->pdata[i] : NULL;
}

char *
sm_block_disk_name (const SmBlockDisk *disk)
{
  static const char peripheral[] = "/machine/peripheral/";

  if (disk->device)
    return g_strdup (disk->device);
  if (disk->qdev && g_str_has_prefix (disk->qdev, peripheral)) {
    const char *id = disk->qdev + strlen (peripheral);
    const char *slash = strchr (id, '/');

    return slash ? g_strndup (id, slash - id) : g_strdup (id);
  }
  if (disk->qdev)
    return g_strdup (disk->qdev);
  return g_strdup (disk->node_name);
}

bool
sm_block_disk_matches (const SmBlockDisk *disk, const char *name)
{
  static const char peripheral[] = "/machine/peripheral/";
  const char *id;
  size_t n;

  if (disk->device && strcmp (disk->device, name) == 0)
    return true;
  if (disk->node_name && strcmp (disk->node_name, name) == 0)
    return true;
  if (!disk->qdev)
    return false;
  if (strcmp (disk->qdev, name) == 0)
    return true;
  if (!g_str_has_prefix (disk->qdev, peripheral))
    return false;
  id = disk->qdev + strlen (peripheral);
  n = strlen (name);
  return strncmp (id, name, n) == 0 &&
         (id[n] == '\0' || strcmp (id + n, "/virtio-backend") == 0);
}

/* QEMU names an image "json:{...}" when it cannot name it by one file
 * name: its backing node is not the one its header names as written
 * (blockdev-snapshot-sync mode=existing attaches the old top to a new top
 * whose header holds a relative name; block-stream, mirror and commit change
 * a top's backing node), or the format node has options of its own (a raw
 * disk opened with offset= or size=, -drive file.driver=...).  The layer's
 * own file is then the "filename" of its protocol child: the "file" child,
 * followed down while it has one of its own (raw over file, qcow2 over raw
 * over file), or of the object itself.  A name with no such file (nbd,
 * a child given by node name) is kept as QEMU gives it. */
static char *
plain_filename (const char *name)
{
  g_autoptr(json_object) obj = NULL;
  json_object *node;
  const char *file = NULL;

  if (!name || !g_str_has_prefix (name, "json:"))
    return g_strdup (name);
  obj = json_tokener_parse (name + 5);
  for (node = obj; node && json_object_is_type (node, json_type_object);
       node = sm_json_get_object (node, "file")) {
    const char *f = sm_json_get_string (node, "filename");

    if (f)
      file = f;
  }
  return g_strdup (file ? file : name);
}

static SmBlockLayer *
layer_new (const char *qemu_filename, const char *format)
{
  SmBlockLayer *layer = g_new0 (SmBlockLayer, 1);

  layer->qemu_filename = g_strdup (qemu_filename);
  layer->filename = plain_filename (qemu_filename);
  layer->format = g_strdup (format);
  return layer;
}

static SmBlockDisk *
parse_disk (json_object *entry, GError **error)
{
  g_autoptr(SmBlockDisk) disk = g_new0 (SmBlockDisk, 1);
  json_object *inserted = sm_json_get_object (entry, "inserted");
  json_object *image;

  disk->device = dup_nonempty (sm_json_get_string (entry, "device"));
  disk->qdev = dup_nonempty (sm_json_get_string (entry, "qdev"));
  disk->io_status = g_strdup (sm_json_get_string (entry, "io-status"));
  disk->chain = g_ptr_array_new_with_free_func (layer_free);
  if (!inserted)
    return g_steal_pointer (&disk);
  disk->node_name = dup_nonempty (sm_json_get_string (inserted, "node-name"));
  disk->format = g_strdup (sm_json_get_string (inserted, "drv"));
  disk->file = g_strdup (sm_json_get_string (inserted, "file"));
  sm_json_get_bool (inserted, "ro", &disk->read_only);
  for (image = sm_json_get_object (inserted, "image"); image;
       image = sm_json_get_object (image, "backing-image")) {
    const char *filename = sm_json_get_string (image, "filename");
    const char *format = sm_json_get_string (image, "format");
    g_autofree char *name = sm_block_disk_name (disk);
    SmBlockLayer *layer;

    if (!filename || !format) {
      g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                   "query-block: disk %s: a layer without filename or format",
                   name ? name : "?");
      return NULL;
    }
    if (disk->chain->len >= SM_BLOCK_MAX_CHAIN) {
      g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                   "query-block: disk %s: backing chain deeper than %d layers",
                   name ? name : "?", SM_BLOCK_MAX_CHAIN);
      return NULL;
    }
    layer = layer_new (filename, format);
    sm_json_get_uint64 (image, "virtual-size", &layer->virtual_size);
    layer->backing_file =
      g_strdup (sm_json_get_string (image, "backing-filename"));
    /* Backing layers are always opened read-only. */
    layer->read_only = disk->chain->len > 0 || disk->read_only;
    if (disk->chain->len == 0)
      layer->node_name = g_strdup (disk->node_name);
    g_ptr_array_add (disk->chain, layer);
  }
  /* Old QEMUs (and odd drivers) may give "file"/"drv" but no "image". */
  if (disk->chain->len == 0 && disk->file && disk->format) {
    SmBlockLayer *layer = layer_new (disk->file, disk->format);

    layer->read_only = disk->read_only;
    layer->node_name = g_strdup (disk->node_name);
    g_ptr_array_add (disk->chain, layer);
  }
  return g_steal_pointer (&disk);
}

static GPtrArray *
parse_disks (json_object *reply, GError **error)
{
  g_autoptr(GPtrArray) disks = NULL;
  size_t i;

  if (!json_object_is_type (reply, json_type_array)) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "query-block: the reply is not an array");
    return NULL;
  }
  disks = g_ptr_array_new_with_free_func ((GDestroyNotify) sm_block_disk_free);
  for (i = 0; i < json_object_array_length (reply); i++) {
    SmBlockDisk *disk = parse_disk (json_object_array_get_idx (reply, i),
                                    error);

    if (!disk)
      return NULL;
    g_ptr_array_add (disks, disk);
  }
  return g_steal_pointer (&disks);
}

GPtrArray *
sm_block_query_disks (SmQmp *qmp, GError **error)
{
  g_autoptr(json_object) reply =
    sm_qmp_execute_type (qmp, "query-block", NULL, json_type_array, error);

  if (!reply)
    return NULL;
  return parse_disks (reply, error);
}

SmBlockDisk *
sm_block_query_disk (SmQmp *qmp, const char *name, GError **error)
{
  g_autoptr(GPtrArray) disks = sm_block_query_disks (qmp, error);
  size_t i;

  if (!disks)
    return NULL;
  for (i = 0; i < disks->len; i++)
    if (sm_block_disk_matches (disks->pdata[i], name))
      return g_ptr_array_steal_index (disks, i);
  sm_block_set_no_disk (error, disks, name);
  return NULL;
}

void
sm_block_job_free (SmBlockJob *job)
{
  if (!job)
    return;
  g_free (job->id);
  g_free (job->type);
  g_free (job->status);
  g_free (job->io_status);
  g_free (job);
}

char *
sm_block_job_id (const char *prefix, const char *name)
{
  GString *s = g_string_new (prefix);
  const char *p;

  for (p = name; *p; p++)
    g_string_append_c (s, g_ascii_isalnum (*p) || *p == '-' || *p == '.' ||
                          *p == '_' ? *p : '_');
  return g_string_free (s, false);
}

static GPtrArray *
parse_jobs (json_object *reply, GError **error)
{
  GPtrArray *jobs;
  size_t i;

  if (!json_object_is_type (reply, json_type_array)) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "query-block-jobs: the reply is not an array");
    return NULL;
  }
  jobs = g_ptr_array_new_with_free_func ((GDestroyNotify) sm_block_job_free);
  for (i = 0; i < json_object_array_length (reply); i++) {
    json_object *e = json_object_array_get_idx (reply, i);
    SmBlockJob *job = g_new0 (SmBlockJob, 1);

    job->id = g_strdup (sm_json_get_string (e, "device"));
    job->type = g_strdup (sm_json_get_string (e, "type"));
    job->status = g_strdup (sm_json_get_string (e, "status"));
    job->io_status = g_strdup (sm_json_get_string (e, "io-status"));
    sm_json_get_bool (e, "ready", &job->ready);
    sm_json_get_bool (e, "busy", &job->busy);
    sm_json_get_bool (e, "paused", &job->paused);
    sm_json_get_uint64 (e, "offset", &job->offset);
    sm_json_get_uint64 (e, "len", &job->len);
    sm_json_get_int64 (e, "speed", &job->speed);
    if (!job->status)
      job->status = g_strdup (job->paused ? "paused"
                              : job->ready ? "ready" : "running");
    if (job->id)
      g_ptr_array_add (jobs, job);
    else
      sm_block_job_free (job);
  }
  return jobs;
}

GPtrArray *
sm_block_query_jobs (SmQmp *qmp, GError **error)
{
  g_autoptr(json_object) reply =
    sm_qmp_execute_type (qmp, "query-block-jobs", NULL, json_type_array,
                         error);

  if (!reply)
    return NULL;
  return parse_jobs (reply, error);
}

void
sm_block_node_free (SmBlockNode *node)
{
  if (!node)
    return;
  g_free (node->node_name);
  g_free (node->drv);
  g_free (node->file);
  g_free (node);
}

void
sm_block_vm_free (SmBlockVm *vm)
{
  if (!vm)
    return;
  if (vm->disks)
    g_ptr_array_unref (vm->disks);
  if (vm->jobs)
    g_ptr_array_unref (vm->jobs);
  if (vm->nodes)
    g_ptr_array_unref (vm->nodes);
  g_free (vm);
}

static GPtrArray *
parse_nodes (json_object *reply, GError **error)
{
  GPtrArray *nodes;
  size_t i;

  nodes = g_ptr_array_new_with_free_func ((GDestroyNotify) sm_block_node_free);
  if (!reply)
    return nodes;
  if (!json_object_is_type (reply, json_type_array)) {
    g_ptr_array_unref (nodes);
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "query-named-block-nodes: the reply is not an array");
    return NULL;
  }
  for (i = 0; i < json_object_array_length (reply); i++) {
    json_object *e = json_object_array_get_idx (reply, i);
    SmBlockNode *node = g_new0 (SmBlockNode, 1);

    node->node_name = g_strdup (sm_json_get_string (e, "node-name"));
    node->drv = g_strdup (sm_json_get_string (e, "drv"));
    node->file = g_strdup (sm_json_get_string (e, "file"));
    sm_json_get_bool (e, "ro", &node->read_only);
    g_ptr_array_add (nodes, node);
  }
  return nodes;
}

/* The name of the only node with driver FORMAT that has LAYER's file open,
 * or NULL: a copy target or a second disk on the same file makes the answer
 * ambiguous, and a wrong node name is worse than none. */
static char *
unique_node_name (const GPtrArray *nodes, const SmBlockLayer *layer)
{
  const SmBlockNode *found = NULL;
  guint i;

  for (i = 0; i < nodes->len; i++) {
    const SmBlockNode *n = nodes->pdata[i];

    if (!n->node_name || g_strcmp0 (n->drv, layer->format) != 0 ||
        (g_strcmp0 (n->file, layer->qemu_filename) != 0 &&
         g_strcmp0 (n->file, layer->filename) != 0))
      continue;
    if (found)
      return NULL;
    found = n;
  }
  return found ? g_strdup (found->node_name) : NULL;
}

SmBlockVm *
sm_block_vm_parse (json_object *blocks, json_object *jobs, json_object *nodes,
                   GError **error)
{
  g_autoptr(SmBlockVm) vm = g_new0 (SmBlockVm, 1);
  guint i, l;

  vm->disks = parse_disks (blocks, error);
  if (!vm->disks)
    return NULL;
  vm->jobs = jobs ? parse_jobs (jobs, error)
    : g_ptr_array_new_with_free_func ((GDestroyNotify) sm_block_job_free);
  if (!vm->jobs)
    return NULL;
  vm->nodes = parse_nodes (nodes, error);
  if (!vm->nodes)
    return NULL;
  for (i = 0; i < vm->disks->len; i++) {
    SmBlockDisk *disk = vm->disks->pdata[i];

    for (l = 1; l < disk->chain->len; l++) {
      SmBlockLayer *layer = disk->chain->pdata[l];

      layer->node_name = unique_node_name (vm->nodes, layer);
    }
  }
  return g_steal_pointer (&vm);
}

SmBlockVm *
sm_block_vm_query (SmQmp *qmp, GError **error)
{
  g_autoptr(json_object) blocks = NULL;
  g_autoptr(json_object) jobs = NULL;
  g_autoptr(json_object) nodes = NULL;
  const SmQmpCaps *caps = sm_qmp_probe (qmp, error);

  if (!caps)
    return NULL;
  blocks = sm_qmp_execute_type (qmp, "query-block", NULL, json_type_array,
                                error);
  if (!blocks)
    return NULL;
  jobs = sm_qmp_execute_type (qmp, "query-block-jobs", NULL, json_type_array,
                              error);
  if (!jobs)
    return NULL;
  if (caps->caps[SM_QMP_CAP_QUERY_NAMED_BLOCK_NODES]) {
    /* flat (QEMU 5.0) leaves out each node's nested backing images, which
     * can be large; only the nodes' own names and files are used. */
    json_object *args = caps->major >= 5
      ? sm_qmp_args (error, "b:flat", true, NULL) : NULL;

    nodes = sm_qmp_execute_type (qmp, "query-named-block-nodes", args,
                                 json_type_array, error);
    if (!nodes)
      return NULL;
  }
  return sm_block_vm_parse (blocks, jobs, nodes, error);
}

SmBlockDisk *
sm_block_vm_find_disk (const SmBlockVm *vm, const char *name)
{
  guint i;

  /* A device name first: it wins over a qdev id that happens to match. */
  for (i = 0; i < vm->disks->len; i++) {
    SmBlockDisk *disk = vm->disks->pdata[i];

    if (disk->device && strcmp (disk->device, name) == 0)
      return disk;
  }
  for (i = 0; i < vm->disks->len; i++)
    if (sm_block_disk_matches (vm->disks->pdata[i], name))
      return vm->disks->pdata[i];
  return NULL;
}

char *
sm_block_vm_disk_names (const SmBlockVm *vm)
{
  GString *s = g_string_new (NULL);
  guint i;

  for (i = 0; i < vm->disks->len; i++) {
    g_autofree char *name = sm_block_disk_name (vm->disks->pdata[i]);

    g_string_append_printf (s, "%s%s", s->len ? ", " : "",
                            name ? name : "?");
  }
  return g_string_free (s, false);
}

char *
sm_block_disks_names (const GPtrArray *disks)
{
  GString *s = g_string_new (NULL);
  guint i;

  for (i = 0; disks && i < disks->len; i++) {
    g_autofree char *name = sm_block_disk_name (disks->pdata[i]);

    g_string_append_printf (s, "%s%s", s->len ? ", " : "",
                            name ? name : "?");
  }
  if (!s->len)
    g_string_append (s, "none");
  return g_string_free (s, false);
}

void
sm_block_set_no_disk (GError **error, const GPtrArray *disks,
                      const char *name)
{
  g_autofree char *names = sm_block_disks_names (disks);

  sm_error_set_with_object (error, SM_ERROR_NOT_FOUND, name,
               "the VM has no disk %s (its disks: %s)", name, names);
}

SmBlockJob *
sm_block_find_job (GPtrArray *jobs, const char *id)
{
  size_t i;

  for (i = 0; i < jobs->len; i++) {
    SmBlockJob *job = jobs->pdata[i];

    if (strcmp (job->id, id) == 0)
      return job;
  }
  return NULL;
}

void
sm_block_poll_pause (SmQmp *qmp, int ms)
{
  g_autoptr(json_object) ev = NULL;

  /* No event has this name: the call reads the socket (queueing what
   * arrives) until the time is up. */
  ev = sm_qmp_wait_event (qmp, "SNAPMIG_NO_SUCH_EVENT", NULL, NULL, ms, NULL);
}

static gint64
deadline_after (int timeout_ms)
{
  return timeout_ms < 0 ? -1 : g_get_monotonic_time () +
                               (gint64) timeout_ms * 1000;
}

static bool
deadline_passed (gint64 deadline)
{
  return deadline >= 0 && g_get_monotonic_time () >= deadline;
}

static bool
match_job_event (json_object *event, void *opaque)
{
  json_object *data = sm_json_get_object (event, "data");
  const char *dev = sm_json_get_string (data, "device");

  return dev && strcmp (dev, opaque) == 0;
}

bool
sm_block_job_wait_gone (SmQmp *qmp, const char *id, int timeout_ms,
                        GError **error)
{
  gint64 deadline = deadline_after (timeout_ms);

  for (;;) {
    g_autoptr(GPtrArray) jobs = sm_block_query_jobs (qmp, error);

    if (!jobs)
      return false;
    if (!sm_block_find_job (jobs, id))
      return true;
    if (deadline_passed (deadline)) {
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "block job %s did not end in time", id);
      return false;
    }
    sm_block_poll_pause (qmp, POLL_MS);
  }
}

bool
sm_block_job_wait_ready (SmQmp *qmp, const char *id, int timeout_ms,
                         GError **error)
{
  gint64 deadline = deadline_after (timeout_ms);

  for (;;) {
    g_autoptr(GPtrArray) jobs = sm_block_query_jobs (qmp, error);
    SmBlockJob *job;

    if (!jobs)
      return false;
    job = sm_block_find_job (jobs, id);
    if (!job) {
      g_autoptr(json_object) ev =
        sm_qmp_wait_event (qmp, NULL, match_job_event, (void *) id, 0, NULL);
      const char *why = sm_json_get_string (sm_json_get_object (ev, "data"),
                                            "error");

      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "block job %s ended before it was ready%s%s", id,
                   why ? ": " : "", why ? why : "");
      return false;
    }
    if (job->ready)
      return true;
    if (deadline_passed (deadline)) {
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "block job %s was not ready in time (%" G_GUINT64_FORMAT
                   " of %" G_GUINT64_FORMAT " bytes copied)", id, job->offset,
                   job->len);
      return false;
    }
    sm_block_poll_pause (qmp, POLL_MS);
  }
}

bool
sm_block_job_cancel_wait (SmQmp *qmp, const char *id, int timeout_ms,
                          GError **error)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(GPtrArray) jobs = sm_block_query_jobs (qmp, error);

  if (!jobs)
    return false;
  if (!sm_block_find_job (jobs, id))
    return true;
  if (!sm_qmp_run (qmp, "block-job-cancel",
                   sm_qmp_args (NULL, "s:device", id, NULL), &err)) {
    /* The job may have ended between the query and the cancel. */
    g_autoptr(GPtrArray) again = sm_block_query_jobs (qmp, NULL);

    if (again && !sm_block_find_job (again, id))
      return true;
    g_propagate_error (error, g_steal_pointer (&err));
    return false;
  }
  return sm_block_job_wait_gone (qmp, id, timeout_ms, error);
}

bool
sm_block_commit_active (SmQmp *qmp, const char *disk_name, const char *id,
                        const char *base_node, const char *base,
                        const char *job_id, int timeout_ms, GError **error)
{
  g_autoptr(SmBlockDisk) disk = NULL;
  g_autoptr(GError) err = NULL;
  const char *top;

  /* Without base, QEMU commits down to the bottom of the chain: name the
   * layer the snapshot was taken on. */
  if (!sm_qmp_run (qmp, "block-commit",
                   sm_qmp_args (NULL, "s:device", id, "s:job-id", job_id,
                                base_node ? "s:base-node" : "s:base",
                                base_node ? base_node : base, NULL), &err)) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP, "disk %s: %s", disk_name,
                 err->message);
    return false;
  }
  if (!sm_block_job_wait_ready (qmp, job_id, timeout_ms, error))
    return false;
  if (!sm_qmp_run (qmp, "block-job-complete",
                   sm_qmp_args (NULL, "s:device", job_id, NULL), &err)) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP, "disk %s: %s", disk_name,
                 err->message);
    return false;
  }
  if (!sm_block_job_wait_gone (qmp, job_id, timeout_ms, error))
    return false;
  disk = sm_block_query_disk (qmp, disk_name, error);
  if (!disk)
    return false;
  top = sm_block_disk_top (disk);
  if (!top || strcmp (top, base) != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "disk %s: the commit into %s left the disk on %s", disk_name,
                 base,
                 top ? top : "no medium");
    return false;
  }
  return true;
}
