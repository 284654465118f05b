/* libsnapmig — a libvirt domain to another libvirt host through libvirt's
 * own migration, on snapmig's pre-creation code (lib/migrate-libvirt.h).
 */
#include "migrate-libvirt.h"

#include <string.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

void
sm_mig_libvirt_result_free (SmMigLibvirtResult *r)
{
  if (!r)
    return;
  g_free (r->domain);
  if (r->disks)
    g_ptr_array_unref (r->disks);
  json_object_put (r->plan);
  g_free (r);
}

/* ---- the destination's XML (pure) ----------------------------------------- */

char *
sm_mig_libvirt_dest_xml (const char *xml, GHashTable *files, GError **error)
{
  xmlDocPtr doc = xmlReadMemory (xml, (int) strlen (xml), "domain.xml", NULL,
                                 XML_PARSE_NONET | XML_PARSE_NOERROR |
                                 XML_PARSE_NOWARNING);
  xmlXPathContextPtr ctx;
  xmlXPathObjectPtr r;
  guint n_found = 0;
  xmlChar *out = NULL;
  int len = 0;
  char *ret = NULL;

  if (!doc) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "libvirt's domain XML could not be read");
    return NULL;
  }
  ctx = xmlXPathNewContext (doc);
  r = xmlXPathEvalExpression ((const xmlChar *) "/domain/devices/disk", ctx);
  for (int k = 0; r && r->nodesetval && k < r->nodesetval->nodeNr; k++) {
    xmlNodePtr disk = r->nodesetval->nodeTab[k];
    const char *file = NULL;

    for (xmlNodePtr c = disk->children; c && !file; c = c->next)
      if (c->type == XML_ELEMENT_NODE &&
          xmlStrcmp (c->name, (const xmlChar *) "target") == 0) {
        xmlChar *dev = xmlGetProp (c, (const xmlChar *) "dev");

        file = dev ? g_hash_table_lookup (files, dev) : NULL;
        xmlFree (dev);
      }
    if (!file)
      continue;
    n_found++;
    for (xmlNodePtr c = disk->children, next; c; c = next) {
      next = c->next;
      if (c->type != XML_ELEMENT_NODE)
        continue;
      if (xmlStrcmp (c->name, (const xmlChar *) "source") == 0)
        xmlSetProp (c, (const xmlChar *) "file", (const xmlChar *) file);
      else if (xmlStrcmp (c->name, (const xmlChar *) "backingStore") == 0) {
        xmlUnlinkNode (c);
        xmlFreeNode (c);
      }
    }
  }
  xmlXPathFreeObject (r);
  if (n_found < g_hash_table_size (files))
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "the domain's XML has %u of the %u migrated disks",
                 n_found, g_hash_table_size (files));
  else
    xmlDocDumpMemory (doc, &out, &len);
  if (out)
    ret = g_strndup ((const char *) out, (gsize) len);
  xmlFree (out);
  xmlXPathFreeContext (ctx);
  xmlFreeDoc (doc);
  return ret;
}

#ifndef SM_HAVE_LIBVIRT

SmMigLibvirtResult *
sm_migrate_libvirt (const SmMigLibvirtOptions *o, GError **error)
{
  (void) o;
  g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
               "snapmig was built without libvirt (install libvirt-dev and "
               "rebuild)");
  return NULL;
}

#else

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "interrupt.h"
#include "layer-copy.h"
#include "migrate-private.h"
#include "precreate.h"
#include "vm-access.h"
#include "vm-libvirt-migrate.h"

#define DEFAULT_TIMEOUT_MS 60000
#define POLL_MS 500
#define MIB (1024 * 1024)

/* The libvirt error of the last call, as "API: MESSAGE". */
static void
set_virt_error (GError **error, const char *api)
{
  virErrorPtr e = virGetLastError ();

  g_set_error (error, SM_ERROR, SM_ERROR_QMP, "%s: %s", api,
               e && e->message ? e->message : "unknown libvirt error");
}

static void
disk_free (SmMigLibvirtDisk *d)
{
  g_free (d->disk);
  g_free (d->dest_top);
  g_free (d);
}

/* One disk that moves: its view, its chain, its plan. */
typedef struct {
  const SmBlockDisk *disk;
  SmImageChain *chain;
  SmPrecreatePlan *plan;
} Move;

static void
move_free (Move *m)
{
  sm_image_chain_free (m->chain);
  sm_precreate_plan_free (m->plan);
  g_free (m);
}

/* Whether DISK moves: named by --migrate-disks, or (without) every
 * writable disk with a file. */
static bool
disk_chosen (const SmBlockDisk *d, char **names)
{
  if (names)
    return g_strv_contains ((const char *const *) names, d->device);
  return !d->read_only && d->chain->len > 0;
}

/* The plans of every moving disk in O's domain, checked together. */
static GPtrArray *
plan_moves (const SmBlockVm *view, const SmMigLibvirtOptions *o,
            GError **error)
{
  g_autoptr(GPtrArray) moves = g_ptr_array_new_with_free_func (
      (GDestroyNotify) move_free);
  g_autoptr(GHashTable) paths = g_hash_table_new (g_str_hash, g_str_equal);
  uint64_t need = 0;
  SmPrecreateMode mode = o->storage == SM_MIG_STORAGE_INC
                         ? SM_PRECREATE_CHAIN : SM_PRECREATE_FLAT;

  for (guint i = 0; o->disks && o->disks[i]; i++) {
    bool found = false;

    for (guint j = 0; j < view->disks->len && !found; j++)
      found = g_strcmp0 (((SmBlockDisk *) view->disks->pdata[j])->device,
                         o->disks[i]) == 0;
    if (!found) {
      sm_error_set_with_object (error, SM_ERROR_NOT_FOUND, o->disks[i],
                                "--migrate-disks: domain %s has no disk %s "
                                "(see 'snapmig disks --connect')", o->domain,
                                o->disks[i]);
      return NULL;
    }
  }
  for (guint i = 0; i < view->disks->len; i++) {
    const SmBlockDisk *d = view->disks->pdata[i];
    const SmBlockLayer *top;
    g_autoptr(SmImageChain) chain = NULL;
    Move *m;
    int fmt;

    if (!disk_chosen (d, o->disks))
      continue;
    for (guint j = 0; j < view->jobs->len; j++)
      if (g_strcmp0 (((SmBlockJob *) view->jobs->pdata[j])->id,
                     d->device) == 0) {
        sm_error_set_with_object (error, SM_ERROR_BUSY, d->device,
                                  "disk %s of domain %s has a block job: "
                                  "let it end (virsh blockjob) first",
                                  d->device, o->domain);
        return NULL;
      }
    if (d->chain->len == 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "disk %s of domain %s has no medium: leave it out of "
                   "--migrate-disks", d->device, o->domain);
      return NULL;
    }
    top = d->chain->pdata[0];
    fmt = sm_image_format_from_string (top->format);
    if (fmt < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                   "disk %s: format %s of %s is not one snapmig copies "
                   "(qcow2, raw)", d->device, top->format, top->filename);
      return NULL;
    }
    chain = sm_image_chain_open (top->filename, (SmImageFormat) fmt, NULL, 0,
                                 error);
    if (!chain) {
      g_prefix_error (error, "disk %s: ", d->device);
      return NULL;
    }
    m = g_new0 (Move, 1);
    m->disk = d;
    m->chain = g_steal_pointer (&chain);
    g_ptr_array_add (moves, m);
    m->plan = sm_precreate_plan (m->chain, mode, o->dest_domain, NULL, error);
    if (!m->plan || !sm_precreate_check (m->plan, 0, error)) {
      g_prefix_error (error, "disk %s: ", d->device);
      return NULL;
    }
    for (guint j = 0; j < m->plan->layers->len; j++) {
      SmPrecreateLayer *l = m->plan->layers->pdata[j];

      need += l->required_bytes;
      if (!g_hash_table_add (paths, l->path)) {
        g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                     "disk %s: its layer %s would have the same file in %s "
                     "as a layer of another disk (rename one of them)",
                     d->device, l->path, o->dest_domain);
        return NULL;
      }
    }
  }
  /* Each plan's check saw its own files; together they must fit too. */
  if (!sm_mig_check_room (o->dest_domain, need, error))
    return NULL;
  if (moves->len == 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "domain %s has no writable disk with a file to migrate",
                 o->domain);
    return NULL;
  }
  return g_steal_pointer (&moves);
}

typedef struct {
  const SmMigLibvirtOptions *o;
  const char *disk;
  const char *file;
} LayerProgress;

static void
layer_progress (uint64_t done, uint64_t total, void *opaque)
{
  LayerProgress *p = opaque;

  sm_mig_emit (p->o->event, p->o->opaque, "progress", "s:what", "layer",
               "s:disk", p->disk, "s:file", p->file, "u:done", done,
               "u:total", total, NULL);
}

/* Creates every planned file (recorded in CREATED); with INC copies the
 * lower layers into theirs. */
static bool
create_moves (GPtrArray *moves, const SmMigLibvirtOptions *o,
              SmCreatedFiles *created, GError **error)
{
  for (guint i = 0; i < moves->len; i++) {
    Move *m = moves->pdata[i];

    if (!sm_precreate_execute (m->plan, 0, created, error)) {
      g_prefix_error (error, "disk %s: ", m->disk->device);
      return false;
    }
  }
  if (o->storage != SM_MIG_STORAGE_INC)
    return true;
  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "layers", NULL);
  for (guint i = 0; i < moves->len; i++) {
    Move *m = moves->pdata[i];

    for (guint j = 1; j < m->plan->layers->len; j++) {
      SmPrecreateLayer *l = m->plan->layers->pdata[j];
      g_autoptr(SmLayerCopy) copy = NULL;
      LayerProgress p = { o, m->disk->device, l->path };

      if (sm_interrupt_check (error))
        return false;
      copy = sm_layer_copy_new (m->disk->device, l->source_path, l->path,
                                l->format, l->backing_name,
                                l->backing_format);
      if (!sm_layer_copy_run (copy, layer_progress, &p, error) ||
          !sm_layer_copy_set_backing (copy, error))
        return false;
    }
  }
  return true;
}

/* ---- the migration --------------------------------------------------------- */

typedef struct {
  virDomainPtr dom;
  virConnectPtr dconn;
  virTypedParameterPtr params;
  int nparams;
  unsigned int flags;
  virDomainPtr result;         /* the destination's domain, or NULL */
  char *error;                 /* libvirt's message when it failed */
  gint done;
} MigrateCall;

static gpointer
migrate_thread (gpointer data)
{
  MigrateCall *c = data;

  c->result = virDomainMigrate3 (c->dom, c->dconn, c->params,
                                 (unsigned int) c->nparams, c->flags);
  if (!c->result) {
    virErrorPtr e = virGetLastError ();

    c->error = g_strdup (e && e->message ? e->message
                                         : "unknown libvirt error");
  }
  g_atomic_int_set (&c->done, 1);
  return NULL;
}

static uint64_t
param_u64 (virTypedParameterPtr p, int n, const char *name)
{
  unsigned long long v = 0;

  if (virTypedParamsGetULLong (p, n, name, &v) <= 0)
    return 0;
  return v;
}

/* Polls the source's job stats while C runs: progress events, the last
 * counts in R; no progress for TIMEOUT_MS, or a signal, aborts the job. */
static void
watch_job (MigrateCall *c, const SmMigLibvirtOptions *o,
           SmMigLibvirtResult *r, GError **abort_reason)
{
  int timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
  gint64 last_change = g_get_monotonic_time ();
  uint64_t last_sum = 0;
  bool aborted = false;

  while (!g_atomic_int_get (&c->done)) {
    virTypedParameterPtr p = NULL;
    int n = 0, type = 0;

    g_usleep (POLL_MS * 1000);
    if (g_atomic_int_get (&c->done))
      break;
    if (virDomainGetJobStats (c->dom, &type, &p, &n, 0) == 0 &&
        type != VIR_DOMAIN_JOB_NONE) {
      uint64_t dd = param_u64 (p, n, VIR_DOMAIN_JOB_DISK_PROCESSED);
      uint64_t dt = param_u64 (p, n, VIR_DOMAIN_JOB_DISK_TOTAL);
      uint64_t md = param_u64 (p, n, VIR_DOMAIN_JOB_MEMORY_PROCESSED);
      uint64_t mt = param_u64 (p, n, VIR_DOMAIN_JOB_MEMORY_TOTAL);

      if (dt > 0)
        sm_mig_emit (o->event, o->opaque, "progress", "s:what", "disk",
                     "u:done", dd, "u:total", dt, NULL);
      if (mt > 0 && md > 0)
        sm_mig_emit (o->event, o->opaque, "progress", "s:what", "ram",
                     "u:done", md, "u:total", mt, NULL);
      r->disk_bytes = MAX (r->disk_bytes, dd);
      r->ram_bytes = MAX (r->ram_bytes, md);
      if (dd + md != last_sum) {
        last_sum = dd + md;
        last_change = g_get_monotonic_time ();
      }
    }
    virTypedParamsFree (p, n);
    if (aborted)
      continue;
    if (sm_interrupt_check (abort_reason) ||
        g_get_monotonic_time () - last_change > (gint64) timeout_ms * 1000) {
      if (abort_reason && !*abort_reason)
        g_set_error (abort_reason, SM_ERROR, SM_ERROR_TIMEOUT,
                     "the migration of domain %s made no progress for %d s: "
                     "aborted (raise --timeout, or check the link to %s)",
                     o->domain, timeout_ms / 1000, o->dest_uri);
      /* libvirt's rollback then ends virDomainMigrate3 with an error. */
      (void) virDomainAbortJob (c->dom);
      aborted = true;
    }
  }
}

static bool
add_params (virTypedParameterPtr *p, int *n, int *max, GPtrArray *moves,
            const SmMigLibvirtOptions *o, const char *xml, const char *pxml)
{
  g_autofree char *uri = o->dest_host
    ? g_strdup_printf (strchr (o->dest_host, ':') ? "tcp://[%s]" : "tcp://%s",
                       o->dest_host) : NULL;

  if (virTypedParamsAddString (p, n, max, VIR_MIGRATE_PARAM_DEST_XML, xml) < 0
      || virTypedParamsAddString (p, n, max, VIR_MIGRATE_PARAM_PERSIST_XML,
                                  pxml) < 0)
    return false;
  for (guint i = 0; i < moves->len; i++) {
    Move *m = moves->pdata[i];

    if (virTypedParamsAddString (p, n, max, VIR_MIGRATE_PARAM_MIGRATE_DISKS,
                                 m->disk->device) < 0)
      return false;
  }
  if (o->bandwidth > 0 &&
      virTypedParamsAddULLong (p, n, max, VIR_MIGRATE_PARAM_BANDWIDTH,
                               (o->bandwidth + MIB - 1) / MIB) < 0)
    return false;
  if (uri &&
      (virTypedParamsAddString (p, n, max, VIR_MIGRATE_PARAM_URI, uri) < 0 ||
       virTypedParamsAddString (p, n, max, VIR_MIGRATE_PARAM_LISTEN_ADDRESS,
                                o->dest_host) < 0))
    return false;
  return true;
}

/* Runs virDomainMigrate3 of DOM to DCONN with the moves' XML. */
static bool
migrate (virDomainPtr dom, virConnectPtr dconn, GPtrArray *moves,
         const SmMigLibvirtOptions *o, SmMigLibvirtResult *r, GError **error)
{
  g_autofree char *live = virDomainGetXMLDesc (dom, VIR_DOMAIN_XML_MIGRATABLE);
  g_autofree char *inactive = virDomainGetXMLDesc (
      dom, VIR_DOMAIN_XML_MIGRATABLE | VIR_DOMAIN_XML_INACTIVE);
  g_autofree char *xml = NULL, *pxml = NULL;
  g_autoptr(GHashTable) files = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr(GError) reason = NULL;
  MigrateCall c = { 0 };
  int max = 0;
  GThread *t;
  bool ok;

  if (!live || !inactive) {
    set_virt_error (error, "virDomainGetXMLDesc");
    return false;
  }
  for (guint i = 0; i < moves->len; i++) {
    Move *m = moves->pdata[i];

    g_hash_table_insert (files, (gpointer) m->disk->device,
                         ((SmPrecreateLayer *) m->plan->layers->pdata[0])->path);
  }
  if (!(xml = sm_mig_libvirt_dest_xml (live, files, error)) ||
      !(pxml = sm_mig_libvirt_dest_xml (inactive, files, error)))
    return false;
  c.dom = dom;
  c.dconn = dconn;
  c.flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PERSIST_DEST |
            VIR_MIGRATE_UNDEFINE_SOURCE |
            (o->storage == SM_MIG_STORAGE_INC ? VIR_MIGRATE_NON_SHARED_INC
                                              : VIR_MIGRATE_NON_SHARED_DISK);
  if (!add_params (&c.params, &c.nparams, &max, moves, o, xml, pxml)) {
    set_virt_error (error, "virTypedParamsAdd");
    virTypedParamsFree (c.params, c.nparams);
    return false;
  }
  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "migrate", NULL);
  t = g_thread_new ("sm-virt-migrate", migrate_thread, &c);
  watch_job (&c, o, r, &reason);
  g_thread_join (t);
  virTypedParamsFree (c.params, c.nparams);
  ok = c.result != NULL;
  if (c.result)
    virDomainFree (c.result);
  if (!ok) {
    if (reason)
      g_propagate_error (error, g_steal_pointer (&reason));
    else
      g_set_error (error, SM_ERROR, SM_ERROR_QMP,
                   "virDomainMigrate3: %s (domain %s still runs on %s)",
                   c.error, o->domain, o->uri);
  }
  g_free (c.error);
  return ok;
}

/* ---- the whole -------------------------------------------------------------- */

/* The domain's view through the access (lib/vm-access.h: the domain found
 * and running, its disks, chains and block jobs); the access also starts
 * the process's libvirt event loop that the migration's connections'
 * keepalive needs. */
static SmBlockVm *
read_view (const SmMigLibvirtOptions *o, int timeout_ms, GError **error)
{
  g_autoptr(SmVmAccess) vm = sm_vm_access_open_libvirt (o->uri, o->domain,
                                                        timeout_ms, error);

  return vm ? vm->ops->query_view (vm, error) : NULL;
}

static virDomainPtr
lookup (virConnectPtr conn, const SmMigLibvirtOptions *o, GError **error)
{
  virDomainPtr dom = virDomainLookupByName (conn, o->domain);

  if (!dom)
    dom = virDomainLookupByUUIDString (conn, o->domain);
  if (!dom)
    sm_error_set_with_object (error, SM_ERROR_NOT_FOUND, o->domain,
                              "libvirt at %s has no domain %s any more",
                              o->uri, o->domain);
  return dom;
}

/* What the moves would make, for --dry-run. */
static json_object *
plan_json (GPtrArray *moves)
{
  json_object *disks = json_object_new_array ();
  json_object *plan = json_object_new_object ();

  for (guint i = 0; i < moves->len; i++) {
    Move *m = moves->pdata[i];
    json_object *d = json_object_new_object ();
    json_object *layers = json_object_new_array ();

    for (guint j = 0; j < m->plan->layers->len; j++) {
      const SmPrecreateLayer *l = m->plan->layers->pdata[j];
      json_object *o = json_object_new_object ();

      json_object_object_add (o, "file", json_object_new_string (l->path));
      json_object_object_add (o, "format", json_object_new_string (
                                sm_image_format_to_string (l->format)));
      json_object_object_add (o, "virtual-size",
                              json_object_new_int64 ((int64_t) l->virtual_size));
      json_object_object_add (o, "required-bytes", json_object_new_int64 (
                                (int64_t) l->required_bytes));
      json_object_object_add (o, "source",
                              l->source_path ? json_object_new_string (
                                l->source_path) : NULL);
      json_object_object_add (o, "backing",
                              l->backing_name ? json_object_new_string (
                                l->backing_name) : NULL);
      json_object_array_add (layers, o);
    }
    json_object_object_add (d, "disk",
                            json_object_new_string (m->disk->device));
    json_object_object_add (d, "file", json_object_new_string (
        ((SmPrecreateLayer *) m->plan->layers->pdata[0])->path));
    json_object_object_add (d, "layers", layers);
    json_object_array_add (disks, d);
  }
  json_object_object_add (plan, "disks", disks);
  return plan;
}

/* The plans, the files, the migration. */
static bool
run (const SmBlockVm *view, virDomainPtr dom, virConnectPtr dconn,
     const SmMigLibvirtOptions *o, SmMigLibvirtResult *r,
     SmCreatedFiles *created, GError **error)
{
  g_autoptr(GPtrArray) moves = NULL;

  if (!(moves = plan_moves (view, o, error)))
    return false;
  if (o->dry_run)
    r->plan = plan_json (moves);
  else {
    sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "precreate",
                 NULL);
    if (!create_moves (moves, o, created, error) ||
        !migrate (dom, dconn, moves, o, r, error))
      return false;
  }
  for (guint i = 0; i < moves->len; i++) {
    Move *m = moves->pdata[i];
    SmMigLibvirtDisk *d = g_new0 (SmMigLibvirtDisk, 1);

    d->disk = g_strdup (m->disk->device);
    d->dest_top = g_strdup (
        ((SmPrecreateLayer *) m->plan->layers->pdata[0])->path);
    g_ptr_array_add (r->disks, d);
  }
  return true;
}

SmMigLibvirtResult *
sm_migrate_libvirt (const SmMigLibvirtOptions *o, GError **error)
{
  g_autoptr(SmMigLibvirtResult) r = g_new0 (SmMigLibvirtResult, 1);
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autoptr(SmBlockVm) view = NULL;
  int timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
  virConnectPtr conn = NULL, dconn = NULL;
  virDomainPtr dom = NULL;
  bool ok = false;

  r->domain = g_strdup (o->domain);
  r->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) disk_free);
  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "plan", NULL);
  if ((view = read_view (o, timeout_ms, error)) &&
      (conn = sm_vm_libvirt_connect (o->uri, timeout_ms, error)) &&
      (dom = lookup (conn, o, error)) &&
      (dconn = sm_vm_libvirt_connect (o->dest_uri, timeout_ms, error)))
    ok = run (view, dom, dconn, o, r, created, error);
  if (!ok) {
    g_autoptr(GError) undo = NULL;

    if (!sm_created_files_rollback (created, &undo))
      g_prefix_error (error, "(files left in %s: %s) ", o->dest_domain,
                      undo->message);
  }
  if (dom)
    virDomainFree (dom);
  if (dconn)
    virConnectClose (dconn);
  if (conn)
    virConnectClose (conn);
  return ok ? g_steal_pointer (&r) : NULL;
}

#endif /* SM_HAVE_LIBVIRT */
