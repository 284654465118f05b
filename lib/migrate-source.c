/* libsnapmig — the source's phases of a cross-host migration: begin,
 * perform, confirm (lib/migrate.h). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include "blockjob.h"
#include "interrupt.h"
#include "journal.h"
#include "json-util.h"
#include "lsm.h"
#include "migrate-private.h"
#include "precreate.h"
#include "rebase.h"
#include "qemu-proc.h"
#include "image-lock.h"

/* ---- planning (no QEMU changes) --------------------------------------- */

/* The local address the kernel would use to reach HOST (a UDP "connect"
 * sends nothing). */
static char *
route_source_address (const char *host)
{
  struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM };
  struct addrinfo *res = NULL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char buf[INET6_ADDRSTRLEN] = "";
  int fd;

  if (getaddrinfo (host, "9", &hints, &res) != 0 || !res)
    return g_strdup ("127.0.0.1");
  fd = socket (res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect (fd, res->ai_addr, res->ai_addrlen) == 0 &&
      getsockname (fd, (struct sockaddr *) &ss, &len) == 0) {
    if (ss.ss_family == AF_INET)
      inet_ntop (AF_INET, &((struct sockaddr_in *) &ss)->sin_addr, buf,
                 sizeof buf);
    else if (ss.ss_family == AF_INET6)
      inet_ntop (AF_INET6, &((struct sockaddr_in6 *) &ss)->sin6_addr, buf,
                 sizeof buf);
  }
  if (fd >= 0)
    close (fd);
  freeaddrinfo (res);
  return g_strdup (*buf ? buf : "127.0.0.1");
}

/* A name for the destination file of source file PATH: its base name, with
 * "./" before a name QEMU would read as a protocol ("x:..."). */
static char *
backing_name_for (const char *path)
{
  g_autofree char *base = g_path_get_basename (path);

  if (strchr (base, ':'))
    return g_strconcat ("./", base, NULL);
  return g_steal_pointer (&base);
}

static bool
disk_selected (const SmMigOptions *o, const SmBlockDisk *bd)
{
  if (!o->disks)
    return true;
  for (char **d = o->disks; *d; d++)
    if (sm_block_disk_matches (bd, *d))
      return true;
  return false;
}

static SmMigLayer *
layer_from_info (SmMigLayerRole role, const SmImageInfo *info)
{
  SmMigLayer *l = sm_mig_layer_new (role);

  l->file = sm_rebase_physical_path (info->path);
  l->format = info->format;
  l->virtual_size = info->virtual_size;
  l->file_size = info->file_size;
  l->allocated = info->allocated_bytes;
  l->cluster_size = info->format == SM_IMAGE_FORMAT_QCOW2 ?
                    info->cluster_size : 0;
  l->backing_format = SM_IMAGE_FORMAT_LAST;
  return l;
}

/* The new source top of disk NAME over TOP for migration ID:
 * "<top without extension>.mig-<first 8 of ID>.qcow2" beside TOP. */
static char *
new_top_path (const char *top, const char *id)
{
  g_autofree char *dir = g_path_get_dirname (top);
  g_autofree char *base = g_path_get_basename (top);
  char *dot = strrchr (base, '.');
  g_autofree char *name = NULL;

  if (dot && dot != base)
    *dot = '\0';
  name = g_strdup_printf ("%s.mig-%s.qcow2", base,
                          strlen (id) > 8 ? id + strlen (id) - 8 : id);
  return g_build_filename (dir, name, NULL);
}

/* The disk part of the cookie for BD with CHAIN (top first). */
static SmMigDisk *
plan_disk (const SmMigCookie *c, const SmBlockDisk *bd, const SmImageChain *chain,
           bool migrate, guint index)
{
  g_autofree char *name = sm_block_disk_name (bd);
  SmMigDisk *d = sm_mig_disk_new (name);
  const SmImageInfo *top = chain->layers->pdata[0];
  guint j;

  d->id = g_strdup (sm_block_disk_id (bd));
  d->migrate = migrate;
  d->format = top->format;
  d->capacity = top->virtual_size;
  d->source_top = sm_rebase_physical_path (top->path);
  d->export = g_strdup (name);
  (void) index;

  if (!migrate) {
    for (j = 0; j < chain->layers->len; j++)
      g_ptr_array_add (d->layers,
                       layer_from_info (SM_MIG_LAYER_SHARED,
                                        chain->layers->pdata[j]));
    return d;
  }

  switch (c->storage) {
  case SM_MIG_STORAGE_CHAIN: {
    SmMigLayer *t = sm_mig_layer_new (SM_MIG_LAYER_TOP);

    d->source_new_top = new_top_path (d->source_top, c->id);
    t->file = g_strdup (d->source_new_top);
    t->name = g_path_get_basename (d->source_new_top);
    t->format = SM_IMAGE_FORMAT_QCOW2;
    t->virtual_size = (top->virtual_size + 511) & ~(uint64_t) 511;
    t->cluster_size = top->format == SM_IMAGE_FORMAT_QCOW2 &&
                      top->cluster_size ? top->cluster_size : 65536;
    t->backing = backing_name_for (d->source_top);
    t->backing_format = top->format;
    g_ptr_array_add (d->layers, t);
    for (j = 0; j < chain->layers->len; j++) {
      const SmImageInfo *info = chain->layers->pdata[j];
      SmMigLayer *l = layer_from_info (SM_MIG_LAYER_COPY, info);

      l->name = g_path_get_basename (l->file);
      if (j + 1 < chain->layers->len) {
        const SmImageInfo *below = chain->layers->pdata[j + 1];
        g_autofree char *below_abs = sm_rebase_physical_path (below->path);

        l->backing = backing_name_for (below_abs);
        l->backing_format = below->format;
      }
      l->export = g_strdup_printf ("layer-%s-%u", name, j);
      g_ptr_array_add (d->layers, l);
    }
    break;
  }
  case SM_MIG_STORAGE_FLAT: {
    SmMigLayer *t = layer_from_info (SM_MIG_LAYER_TOP, top);

    t->name = g_path_get_basename (t->file);
    t->allocated = 0;
    for (j = 0; j < chain->layers->len; j++)
      t->allocated += ((const SmImageInfo *) chain->layers->pdata[j])
                        ->allocated_bytes;
    g_ptr_array_add (d->layers, t);
    break;
  }
  case SM_MIG_STORAGE_INC: {
    SmMigLayer *t = layer_from_info (SM_MIG_LAYER_TOP, top);

    t->name = g_path_get_basename (t->file);
    g_ptr_array_add (d->layers, t);
    for (j = 1; j < chain->layers->len; j++) {
      SmMigLayer *l = layer_from_info (SM_MIG_LAYER_SHARED,
                                       chain->layers->pdata[j]);
      if (j == 1) {
        t->backing = g_strdup (l->file);
        t->backing_format = l->format;
      }
      g_ptr_array_add (d->layers, l);
    }
    break;
  }
  case SM_MIG_STORAGE_LAST:
  default:
    g_assert_not_reached ();
  }
  return d;
}

SmMigCookie *
sm_migrate_plan_begin (const SmLsmVm *vm, const char *qmp_address,
                       pid_t qmp_pid, const SmMigOptions *o, const char *id,
                       GError **error)
{
  g_autoptr(SmMigCookie) c = sm_mig_cookie_new ();
  g_autoptr(GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  pid_t pid;
  guint i, moved = 0;

  c->id = g_strdup (id);
  c->phase = g_strdup ("begin");
  c->hostname = g_strdup (g_get_host_name ());
  c->storage = o->storage;
  c->bandwidth = o->bandwidth;
  c->copy_mode = g_strdup (o->copy_mode);
  c->postcopy = o->postcopy || o->postcopy_after_precopy;
  c->postcopy_after_precopy = o->postcopy_after_precopy;
  c->postcopy_fallback = c->postcopy && o->postcopy_fallback;
  c->postcopy_bandwidth = o->postcopy_bandwidth >= 0 ?
                          (uint64_t) o->postcopy_bandwidth : o->bandwidth;
  c->parallel = o->parallel;
  c->transport = g_strdup (sm_mig_transport_name (o->tunnel, o->tls,
                                                  o->unix_sockets));
  c->link_timeout = o->link_timeout_ms / 1000;
  if (c->postcopy && c->parallel > 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "post-copy cannot be combined with multifd (%d parallel "
                 "connections): later QEMUs refuse it, and 7.2's combination "
                 "is unsafe; drop one of them", c->parallel);
    return NULL;
  }
  c->source_qmp = qmp_address[0] == '/' ? sm_rebase_physical_path (qmp_address)
                                        : g_strdup (qmp_address);
  c->dest_host = g_strdup (o->dest_host ? o->dest_host : "127.0.0.1");
  c->source_host = o->source_host ? g_strdup (o->source_host)
                                  : route_source_address (c->dest_host);
  pid = qmp_pid > 0 ? qmp_pid : sm_unix_socket_server_pid (c->source_qmp);
  c->source_pid = pid;
  if (pid > 0)
    c->qemu_argv = sm_qemu_read_cmdline (pid, NULL);
  c->name = sm_qemu_cmdline_option (c->qemu_argv, "-name");
  if (!c->name) {
    g_autofree char *base = g_path_get_basename (qmp_address);
    char *dot = strrchr (base, '.');

    if (dot && dot != base)
      *dot = '\0';
    c->name = g_steal_pointer (&base);
  }
  c->uuid = sm_qemu_cmdline_option (c->qemu_argv, "-uuid");
  if (!c->uuid)
    c->uuid = g_uuid_string_random ();

  if (o->disks) {
    for (char **d = o->disks; *d; d++) {
      if (g_hash_table_contains (seen, *d)) {
        g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                     "disk %s is named twice in --migrate-disks", *d);
        return NULL;
      }
      g_hash_table_add (seen, *d);
      if (!sm_lsm_vm_find_disk (vm, *d)) {
        sm_block_set_no_disk (error, vm->disks, *d);
        return NULL;
      }
    }
  }

  for (i = 0; i < vm->disks->len; i++) {
    const SmBlockDisk *bd = vm->disks->pdata[i];
    const SmImageChain *chain;
    bool migrate;
    g_autofree char *name = sm_block_disk_name (bd);

    if (!bd->chain || bd->chain->len == 0)
      continue;                       /* empty drive: nothing to move */
    migrate = !bd->read_only && disk_selected (o, bd);
    if (bd->read_only && o->disks && disk_selected (o, bd)) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "disk %s is read-only: it is not migrated (leave it out "
                   "of --migrate-disks; it must be on storage the "
                   "destination sees)", name);
      return NULL;
    }
    chain = g_hash_table_lookup (vm->chains, sm_block_disk_id (bd));
    if (!chain) {
      const char *why = g_hash_table_lookup (vm->chain_errors,
                                             sm_block_disk_id (bd));
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "disk %s: its chain cannot be read: %s", name,
                   why ? why : "unknown reason");
      return NULL;
    }
    if (migrate) {
      for (guint j = 0; j < vm->jobs->len; j++) {
        const SmBlockJob *job = vm->jobs->pdata[j];

        if (g_strcmp0 (job->id, sm_block_disk_id (bd)) == 0 ||
            g_str_has_suffix (job->id, name)) {
          g_set_error (error, SM_ERROR, SM_ERROR_BUSY,
                       "disk %s has a block job (%s %s): wait for it or "
                       "cancel it first", name, job->type, job->id);
          return NULL;
        }
      }
      if (o->storage == SM_MIG_STORAGE_INC && chain->layers->len < 2) {
        g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                     "disk %s has no backing file: --copy-storage-inc moves "
                     "only the top, and this disk is all top (use "
                     "--copy-storage-all or leave it out with "
                     "--migrate-disks)", name);
        return NULL;
      }
      moved++;
    }
    g_ptr_array_add (c->disks, plan_disk (c, bd, chain, migrate, i));
  }
  if (moved == 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "no disk to migrate (the VM has %s)",
                 vm->disks->len ? "only read-only or empty drives"
                                : "no disk");
    return NULL;
  }
  if (c->storage == SM_MIG_STORAGE_CHAIN && !vm->has_transaction &&
      moved > 1) {
    g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                 "this QEMU has no 'transaction': the snapshot of several "
                 "disks cannot be atomic (use --flatten)");
    return NULL;
  }
  return g_steal_pointer (&c);
}

/* ---- begin --------------------------------------------------------------- */

static json_object *
journal_header (const SmMigCookie *c, const char *created, const char *run_state)
{
  json_object *h = json_object_new_object ();
  json_object *disks = json_object_new_array ();

  json_object_object_add (h, "op", json_object_new_string ("migrate-out"));
  json_object_object_add (h, "id", json_object_new_string (c->id));
  json_object_object_add (h, "storage",
                          json_object_new_string (sm_mig_storage_to_string (c->storage)));
  json_object_object_add (h, "created", json_object_new_string (created));
  json_object_object_add (h, "run-state", json_object_new_string (run_state ? run_state : ""));
  for (guint i = 0; i < c->disks->len; i++) {
    const SmMigDisk *d = c->disks->pdata[i];
    json_object *o;

    if (!d->migrate)
      continue;
    o = json_object_new_object ();
    json_object_object_add (o, "name", json_object_new_string (d->name));
    json_object_object_add (o, "id", json_object_new_string (d->id));
    json_object_object_add (o, "orig-top", json_object_new_string (d->source_top));
    if (d->source_new_top)
      json_object_object_add (o, "new-top", json_object_new_string (d->source_new_top));
    json_object_array_add (disks, o);
  }
  json_object_object_add (h, "disks", disks);
  return h;
}

/* Test hook SNAPMIG_TEST_MIGRATE_CRASH_AT=N: SIGKILL right after the N-th
 * step record this process journaled (counted over every journal of the
 * migration the process writes: begin, perform and confirm in one
 * `migrate`), so that a test can kill either side at every step;
 * COMMAND:N only in the process whose name ends with COMMAND
 * ("migrate-prepare", "migrate-finish"). */
static void
test_crash_at_step (void)
{
  static unsigned count;
  const char *s = g_getenv ("SNAPMIG_TEST_MIGRATE_CRASH_AT");
  const char *colon = s ? strchr (s, ':') : NULL;

  if (!s)
    return;
  if (colon) {                  /* COMMAND:N, e.g. migrate-finish:2 */
    g_autofree char *cmd = g_strndup (s, (gsize) (colon - s));
    const char *prg = g_get_prgname ();

    if (!prg || !g_str_has_suffix (prg, cmd))
      return;
    s = colon + 1;
  }
  if (strtoul (s, NULL, 10) == ++count)
    kill (getpid (), SIGKILL);
}

bool
sm_mig_journal_step (SmJournal *j, const char *step, const char *phase,
                     const GError *err, GError **error)
{
  json_object *r = json_object_new_object ();

  json_object_object_add (r, "step", json_object_new_string (step));
  json_object_object_add (r, "phase", json_object_new_string (phase));
  if (err)
    json_object_object_add (r, "error", json_object_new_string (err->message));
  if (!sm_journal_append (j, r, error))
    return false;
  test_crash_at_step ();
  return true;
}

void
sm_mig_emit (SmMigEventFn fn, void *opaque, const char *event,
             const char *first_key, ...)
{
  json_object *o;
  va_list ap;
  const char *key;

  if (!fn)
    return;
  o = json_object_new_object ();
  json_object_object_add (o, "event", json_object_new_string (event));
  va_start (ap, first_key);
  for (key = first_key; key; key = va_arg (ap, const char *)) {
    char type = key[0];
    const char *k = key + 2;

    if (type == 's') {
      const char *v = va_arg (ap, const char *);
      if (v)
        json_object_object_add (o, k, json_object_new_string (v));
    } else if (type == 'u') {
      json_object_object_add (o, k, json_object_new_int64 ((int64_t) va_arg (ap, uint64_t)));
    } else if (type == 'b') {
      json_object_object_add (o, k, json_object_new_boolean (va_arg (ap, int)));
    }
  }
  va_end (ap);
  fn (o, opaque);
  json_object_put (o);
}

char *
sm_mig_outgoing_path (SmVmState *st, const char *id, const char *ext)
{
  g_autofree char *name = g_strconcat (id, ext, NULL);

  return g_build_filename (sm_vm_state_journal_dir (st), name, NULL);
}

char *
sm_mig_journal_path (SmVmState *st, const char *id)
{
  return sm_mig_outgoing_path (st, id, ".journal");
}

bool
sm_mig_records_have (json_object *records, const char *step,
                     const char *phase)
{
  for (size_t i = 1; i < json_object_array_length (records); i++) {
    json_object *r = json_object_array_get_idx (records, i);

    if (g_strcmp0 (sm_json_get_string (r, "step"), step) == 0 &&
        (!phase || g_strcmp0 (sm_json_get_string (r, "phase"), phase) == 0))
      return true;
  }
  return false;
}

/* Starts the source's NBD server for the lower layers and exports each COPY
 * layer's file, raw and read-only.  Sets c->layers_uri. */
static bool
start_layer_server (SmQmp *qmp, SmVmState *st, SmMigCookie *c,
                    const SmMigOptions *o, GError **error)
{
  g_autofree char *tls = sm_mig_tls_server_id (c);
  g_autofree char *sock_dir = NULL;
  bool any = false;
  guint i, j, n = 0;

  for (i = 0; i < c->disks->len; i++) {
    const SmMigDisk *d = c->disks->pdata[i];
    for (j = 0; j < d->layers->len; j++)
      any = any || ((SmMigLayer *) d->layers->pdata[j])->role == SM_MIG_LAYER_COPY;
  }
  if (!any)
    return true;
  sock_dir = sm_mig_socket_dir (st);
  if (!sm_mig_nbd_server_start (qmp, o->unix_sockets, c->source_host,
                                sock_dir, c->id,
                                strcmp (sock_dir, sm_vm_state_journal_dir (st)) == 0 ?
                                "layers" : "layers-snapmig",
                                o->port_min, o->port_max, tls, &c->layers_uri,
                                error))
    return false;
  for (i = 0; i < c->disks->len; i++) {
    const SmMigDisk *d = c->disks->pdata[i];

    for (j = 0; j < d->layers->len; j++) {
      const SmMigLayer *l = d->layers->pdata[j];
      g_autofree char *node = NULL;
      GError *err = NULL;

      if (l->role != SM_MIG_LAYER_COPY)
        continue;
      node = g_strdup_printf ("sm-layer-%u", n++);
      if (!sm_qmp_run (qmp, "blockdev-add",
                       sm_qmp_args (&err, "s:driver", "raw", "s:node-name", node,
                                    "b:read-only", true,
                                    "j:file", sm_qmp_args (&err, "s:driver", "file",
                                                           "s:filename", l->file,
                                                           NULL),
                                    NULL), &err) ||
          !sm_qmp_run (qmp, "block-export-add",
                       sm_qmp_args (&err, "s:type", "nbd", "s:id", node,
                                    "s:node-name", node, "s:name", l->export,
                                    "b:writable", false, NULL), &err)) {
        g_set_error (error, SM_ERROR, err->code,
                     "disk %s: cannot export layer %s to the destination: %s",
                     d->name, l->file, err->message);
        g_error_free (err);
        return false;
      }
    }
  }
  return true;
}

/* Undoes begin's snapshot: folds each new top back into the old one online
 * (or offline when QEMU is gone) and removes it. */
bool
sm_migrate_fold_back (SmQmp *qmp, const SmMigCookie *c, SmCreatedFiles *created,
           GError **error)
{
  GError *first = NULL;

  for (guint i = 0; i < c->disks->len; i++) {
    const SmMigDisk *d = c->disks->pdata[i];
    g_autoptr(SmBlockDisk) bd = NULL;
    g_autofree char *job = NULL;
    GError *err = NULL;

    if (!d->migrate || !d->source_new_top)
      continue;
    bd = qmp ? sm_block_query_disk (qmp, d->name, NULL) : NULL;
    if (bd) {
      g_autofree char *top = sm_block_disk_top (bd) ?
                             sm_rebase_physical_path (sm_block_disk_top (bd)) : NULL;
      if (g_strcmp0 (top, d->source_new_top) != 0)
        continue;                     /* not (or no longer) on the new top */
    }
    if (bd) {
      const SmBlockLayer *base = sm_block_disk_layer (bd, 1);

      job = sm_block_job_id ("snapmig-fold-", d->name);
      if (!sm_block_commit_active (qmp, d->name, sm_block_disk_id (bd),
                                   base ? base->node_name : NULL,
                                   d->source_top, job, SM_MIG_UNDO_TIMEOUT_MS,
                                   &err)) {
        g_prefix_error (&err, "disk %s: ", d->name);
        if (!first)
          first = err;
        else
          g_error_free (err);
        continue;
      }
    } else if (!qmp) {
      SmLsmDisk ld = { .name = d->name, .new_top = d->source_new_top,
                       .orig_top = d->source_top };
      if (g_file_test (d->source_new_top, G_FILE_TEST_EXISTS) &&
          !sm_lsm_fold_offline (&ld, &err)) {
        if (!first)
          first = err;
        else
          g_error_free (err);
        continue;
      }
    }
  }
  if (!first && created)
    sm_created_files_rollback (created, &first);
  if (first) {
    g_propagate_error (error, first);
    return false;
  }
  return true;
}

SmMigCookie *
sm_migrate_begin (SmQmp *qmp, SmVmState *st, const SmMigOptions *o,
                  bool dry_run, GError **error)
{
  g_autoptr(SmLsmVm) vm = NULL;
  g_autoptr(SmMigCookie) c = NULL;
  g_autoptr(SmJournal) journal = NULL;
  g_autoptr(SmCreatedFiles) created = NULL;
  g_autofree char *id = sm_journal_new_opid ();
  g_autofree char *created_record = NULL;
  const SmQmpCaps *caps;
  GError *err = NULL;
  json_object *actions;
  guint i;

  if (o->tls && !sm_mig_tls_check_dir (o->tls_creds, error))
    return NULL;
  caps = sm_qmp_probe (qmp, error);
  if (!caps)
    return NULL;
  if (!caps->caps[SM_QMP_CAP_NBD_SERVER] || !caps->caps[SM_QMP_CAP_MIGRATE] ||
      !caps->caps[SM_QMP_CAP_BLOCK_EXPORT_ADD]) {
    g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                 "QEMU behind %s lacks %s: it cannot migrate its disks over "
                 "NBD (QEMU 5.2 or later is needed)", sm_qmp_address (qmp),
                 !caps->caps[SM_QMP_CAP_MIGRATE] ? "migrate" :
                 !caps->caps[SM_QMP_CAP_NBD_SERVER] ? "nbd-server-start"
                                                     : "block-export-add");
    return NULL;
  }
  {
    /* the switchover waits for the disks: without pause-before-switchover
     * (QEMU 2.11) the guest would run on the destination before its last
     * writes arrived */
    g_autoptr(json_object) mc = sm_qmp_execute_type (
      qmp, "query-migrate-capabilities", NULL, json_type_array, error);
    bool found = false, postcopy = false, multifd = false, multifd_on = false;

    if (!mc)
      return NULL;
    for (size_t k = 0; k < json_object_array_length (mc); k++) {
      json_object *cap = json_object_array_get_idx (mc, k);
      const char *name = sm_json_get_string (cap, "capability");
      bool state = false;

      sm_json_get_bool (cap, "state", &state);
      found = found || g_strcmp0 (name, "pause-before-switchover") == 0;
      postcopy = postcopy || g_strcmp0 (name, "postcopy-ram") == 0;
      if (g_strcmp0 (name, "multifd") == 0) {
        multifd = true;
        multifd_on = state;
      }
    }
    if ((o->postcopy || o->postcopy_after_precopy) && !postcopy) {
      g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                   "QEMU behind %s has no migration capability postcopy-ram: "
                   "migrate without --postcopy", sm_qmp_address (qmp));
      return NULL;
    }
    if ((o->postcopy || o->postcopy_after_precopy) && multifd_on) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "QEMU behind %s has the multifd capability enabled: "
                   "post-copy cannot be combined with multifd (later QEMUs "
                   "refuse it); turn it off (migrate-set-capabilities "
                   "multifd false) or migrate without --postcopy",
                   sm_qmp_address (qmp));
      return NULL;
    }
    if (o->parallel > 0 && !multifd) {
      g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                   "QEMU behind %s has no migration capability multifd: "
                   "migrate without --parallel", sm_qmp_address (qmp));
      return NULL;
    }
    if (!found) {
      g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                   "QEMU behind %s has no migration capability "
                   "pause-before-switchover (QEMU 2.11 or later): its disks "
                   "cannot be completed before the switchover, so nothing "
                   "was changed", sm_qmp_address (qmp));
      return NULL;
    }
  }
  vm = sm_lsm_vm_query (qmp, error);
  if (!vm)
    return NULL;
  c = sm_migrate_plan_begin (vm, sm_qmp_address (qmp), sm_qmp_peer_pid (qmp),
                             o, id, error);
  if (!c)
    return NULL;
  if (g_strcmp0 (vm->run_state, "running") != 0 &&
      g_strcmp0 (vm->run_state, "paused") != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "the VM is %s: only a running or paused VM can migrate",
                 vm->run_state ? vm->run_state : "in an unknown state");
    return NULL;
  }
  c->source_running = g_strcmp0 (vm->run_state, "running") == 0;
  if (dry_run)
    return g_steal_pointer (&c);

  if (!sm_vm_state_lock (st, error))
    return NULL;
  created_record = sm_mig_outgoing_path (st, c->id, ".created");
  journal = sm_journal_create (sm_vm_state_journal_dir (st), c->id,
                               journal_header (c, created_record,
                                               vm->run_state), error);
  if (!journal)
    return NULL;
  created = sm_created_files_new ();

  if (c->storage == SM_MIG_STORAGE_CHAIN) {
    /* the new tops, then one transaction */
    if (!sm_mig_journal_step (journal, "create-tops", "begin", NULL, &err))
      goto fail;
    for (i = 0; i < c->disks->len; i++) {
      const SmMigDisk *d = c->disks->pdata[i];
      g_autoptr(SmImageInfo) orig = NULL;
      g_autoptr(SmPrecreatePlan) p = NULL;

      if (!d->migrate)
        continue;
      orig = sm_image_probe (d->source_top, d->format, &err);
      if (!orig)
        goto fail;
      p = sm_lsm_plan_new_top (d->source_new_top, orig);
      sm_created_files_add (created, d->source_new_top);
      if (!sm_created_files_save (created, created_record, &err) ||
          !sm_precreate_execute (p, 0, created, &err))
        goto fail;
    }
    if (!sm_created_files_save (created, created_record, &err) ||
        !sm_mig_journal_step (journal, "create-tops", "end", NULL, &err) ||
        !sm_mig_journal_step (journal, "snapshot", "begin", NULL, &err))
      goto fail;
    actions = json_object_new_array ();
    for (i = 0; i < c->disks->len; i++) {
      const SmMigDisk *d = c->disks->pdata[i];
      const SmBlockDisk *bd = sm_lsm_vm_find_disk (vm, d->name);
      g_autofree char *node = sm_lsm_new_node_name (c->id, i);
      json_object *a;

      if (!d->migrate)
        continue;
      a = json_object_new_object ();
      json_object_object_add (a, "type",
                              json_object_new_string ("blockdev-snapshot-sync"));
      json_object_object_add (a, "data",
                              sm_lsm_snapshot_action (bd, d->source_new_top,
                                                      node));
      json_object_array_add (actions, a);
    }
    if (!sm_qmp_run (qmp, "transaction",
                     sm_qmp_args (&err, "j:actions", actions, NULL), &err)) {
      g_prefix_error (&err, "the snapshot giving every disk a new top failed: ");
      goto fail;
    }
    if (!sm_mig_journal_step (journal, "snapshot", "end", NULL, &err))
      goto fail;
  }
  if (!sm_mig_journal_step (journal, "layer-server", "begin", NULL, &err) ||
      !sm_mig_tls_source_setup (qmp, c, o->tls_creds, &err) ||
      !start_layer_server (qmp, st, c, o, &err) ||
      !sm_mig_journal_step (journal, "layer-server", "end", NULL, &err))
    goto fail;
  return g_steal_pointer (&c);

fail:
  {
    GError *undo = NULL;

    sm_migrate_stop_layer_server (qmp, c);
    sm_mig_tls_remove (qmp, c);
    if (!sm_migrate_fold_back (qmp, c, created, &undo)) {
      GError *both = g_error_new (SM_ERROR, err->code, "%s (and the undo "
                                  "failed: %s; run 'snapmig recover --qmp %s')",
                                  err->message, undo->message,
                                  sm_qmp_address (qmp));
      g_error_free (undo);
      g_error_free (err);
      err = both;
      sm_mig_journal_step (journal, "rollback", "failed", err, NULL);
      g_propagate_error (error, err);
      return NULL;
    }
    sm_mig_journal_step (journal, "rollback", "end", err, NULL);
    unlink (created_record);
    sm_journal_finish (g_steal_pointer (&journal), NULL);
    g_propagate_error (error, err);
    return NULL;
  }
}
