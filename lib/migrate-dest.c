/* libsnapmig — the destination's phases of a cross-host migration:
 * prepare, finish, and the cancel that removes everything prepare made
 * (lib/migrate.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include "blockjob.h"
#include "image-lock.h"
#include "interrupt.h"
#include "journal.h"
#include "json-util.h"
#include "layer-copy.h"
#include "migrate-private.h"
#include "tunnel.h"
#include "precreate.h"
#include "qemu-proc.h"

#define DOMAIN "migrate"

int
sm_mig_dest_stall_ms (const SmMigDestOptions *o)
{
  return o->timeout_ms > 0 ? o->timeout_ms : SM_MIG_STALL_MS;
}



/* ---- planning ------------------------------------------------------------ */

/* The image chain the cookie describes for disk D's layers that move (TOP
 * and COPY), as sm_precreate_plan takes it. */
static SmImageChain *
cookie_chain (const SmMigDisk *d)
{
  SmImageChain *chain = g_new0 (SmImageChain, 1);

  chain->layers = g_ptr_array_new_with_free_func ((GDestroyNotify) sm_image_info_free);
  for (guint j = 0; j < d->layers->len; j++) {
    const SmMigLayer *l = d->layers->pdata[j];
    SmImageInfo *info;

    if (l->role == SM_MIG_LAYER_SHARED)
      break;
    info = g_new0 (SmImageInfo, 1);
    info->path = g_strdup (l->file);
    info->format = l->format;
    info->virtual_size = l->virtual_size;
    info->file_size = l->file_size;
    info->allocated_bytes = l->allocated;
    info->cluster_size = l->cluster_size;
    if (l->cluster_size)
      info->cluster_bits = (uint32_t) g_bit_nth_lsf (l->cluster_size, -1);
    info->qcow2_version = l->format == SM_IMAGE_FORMAT_QCOW2 ? 3 : 0;
    info->backing_file = g_strdup (l->backing);
    info->backing_format = l->backing_format < SM_IMAGE_FORMAT_LAST ?
      g_strdup (sm_image_format_to_string (l->backing_format)) : NULL;
    g_ptr_array_add (chain->layers, info);
  }
  return chain;
}

/* Layers on shared storage must be there, of the size the source sees. */
static bool
check_shared (const SmMigDisk *d, GError **error)
{
  for (guint j = 0; j < d->layers->len; j++) {
    const SmMigLayer *l = d->layers->pdata[j];
    g_autoptr(SmImageInfo) info = NULL;
    GError *err = NULL;

    if (l->role != SM_MIG_LAYER_SHARED)
      continue;
    info = sm_image_probe (l->file, l->format, &err);
    if (!info) {
      g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                   "disk %s: %s is not on storage this host sees (%s): "
                   "migrate the disk (--migrate-disks, --copy-storage-all) "
                   "or make the storage shared", d->name, l->file,
                   err->message);
      g_error_free (err);
      return false;
    }
    if (info->virtual_size != l->virtual_size ||
        (l->file_size && info->file_size != l->file_size)) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "disk %s: %s here differs from the source's (virtual size "
                   "%" G_GUINT64_FORMAT " / file size %" G_GUINT64_FORMAT
                   ", the source's %" G_GUINT64_FORMAT " / %" G_GUINT64_FORMAT
                   "): it is not the same shared file", d->name, l->file,
                   info->virtual_size, info->file_size, l->virtual_size,
                   l->file_size);
      return false;
    }
  }
  return true;
}

/* The precreate plans of every migrated disk (NULL for the others), the
 * room for all of them checked together. */
static GPtrArray *
plan_disks (SmMigCookie *c, const char *domain, bool allow_larger,
            GError **error)
{
  g_autoptr(GPtrArray) plans = g_ptr_array_new_with_free_func (
      (GDestroyNotify) sm_precreate_plan_free);
  g_autoptr(GHashTable) paths = g_hash_table_new (g_str_hash, g_str_equal);
  uint64_t need = 0;

  (void) allow_larger;
  for (guint i = 0; i < c->disks->len; i++) {
    SmMigDisk *d = c->disks->pdata[i];
    g_autoptr(SmImageChain) chain = NULL;
    SmPrecreatePlan *p;

    if (!check_shared (d, error))
      return NULL;
    if (!d->migrate) {
      g_ptr_array_add (plans, NULL);
      continue;
    }
    chain = cookie_chain (d);
    p = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, domain, NULL, error);
    if (!p) {
      g_prefix_error (error, "disk %s: ", d->name);
      return NULL;
    }
    g_ptr_array_add (plans, p);
    if (c->storage == SM_MIG_STORAGE_INC) {
      SmPrecreateLayer *top = p->layers->pdata[0];
      const SmMigLayer *l = d->layers->pdata[0];

      g_free (top->backing_name);
      top->backing_name = g_strdup (l->backing);
      top->backing_format = l->backing_format;
    }
    for (guint j = 0; j < p->layers->len; j++) {
      SmPrecreateLayer *pl = p->layers->pdata[j];

      if (g_hash_table_contains (paths, pl->path)) {
        g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                     "disk %s: its layer %s would have the same file in %s as "
                     "a layer of another disk (rename one of them)", d->name,
                     pl->path, domain);
        return NULL;
      }
      g_hash_table_add (paths, pl->path);
      need += pl->required_bytes;
    }
    g_free (d->dest_top);
    d->dest_top = g_strdup (((SmPrecreateLayer *) p->layers->pdata[0])->path);
  }
  if (!sm_mig_check_room (domain, need, error))
    return NULL;
  return g_steal_pointer (&plans);
}

bool
sm_mig_check_room (const char *domain, uint64_t need, GError **error)
{
  struct statvfs vfs;

  if (statvfs (domain, &vfs) == 0 &&
      (uint64_t) vfs.f_bavail * vfs.f_frsize < need) {
    g_autofree char *n = g_format_size_full (need, G_FORMAT_SIZE_IEC_UNITS);
    g_autofree char *h = g_format_size_full ((uint64_t) vfs.f_bavail * vfs.f_frsize,
                                             G_FORMAT_SIZE_IEC_UNITS);
    sm_error_set_with_object (error, SM_ERROR_NO_SPACE, domain,
                 "not enough space in %s for the migrated disks: need %s, "
                 "have %s (free space or choose another --dest-domain)",
                 domain, n, h);
    return false;
  }
  return true;
}
/* ---- prepare ------------------------------------------------------------ */

/* Where this destination reaches the source's layer server: the cookie's
 * URI, or with --tunnel the tunnel's reverse forward in
 * STATE/run/ID-tunnel (lib/tunnel.h).  Caller frees. */
static char *
layers_uri (const SmMigCookie *c, const SmMigDestOptions *o)
{
  g_autofree char *dir = NULL;

  if (!o->tunnel)
    return g_strdup (c->layers_uri);
  dir = sm_tunnel_dest_dir (o->state_dir, c->id);
  return g_strconcat ("unix:", dir, "/" SM_TUNNEL_LAYERS_SOCK, NULL);
}

/* In the pull's qemu-img: it dies with the thread that started it (a
 * prepare killed by SIGKILL must not leave it writing into the domain,
 * reconnecting for the link timeout), also when that one is gone already. */
static void
pull_child_setup (gpointer data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
  if (getppid () != *(pid_t *) data)
    _exit (127);
}

/* Pulls one COPY layer's bytes from the source's export into DEST (already
 * created), then makes it durable and sets its backing name. */
static bool
pull_layer (const SmMigCookie *c, const SmMigDisk *d, const SmMigLayer *l,
            const char *dest, const SmMigDestOptions *o, GError **error)
{
  g_autofree char *uri = layers_uri (c, o);
  int link_ms = sm_mig_link_timeout_ms (o->link_timeout_ms > 0 ?
                                        o->link_timeout_ms :
                                        c->link_timeout * 1000);
  g_autofree char *url = sm_mig_layer_source (c, uri, l->export,
                                              (link_ms + 999) / 1000, error);
  g_autofree char *rate = c->bandwidth ?
    g_strdup_printf ("%" G_GUINT64_FORMAT, c->bandwidth) : NULL;
  g_auto(GStrv) tls_argv = sm_mig_tls_pull_argv (c, o->tls_creds);
  const char *argv[24];
  int n = 0, fd, status = 0, out_fd = -1;
  GPid child;
  GError *err = NULL;
  gint64 last = g_get_monotonic_time ();
  off_t last_blocks = -1;
  g_autoptr(SmLayerCopy) copy = NULL;
  int stall = sm_mig_dest_stall_ms (o);
  gint64 last_event = 0;
  pid_t parent = getpid ();

  if (!url)
    return false;
  fd = open (dest, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || ftruncate (fd, 0) < 0 || ftruncate (fd, (off_t) l->file_size) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: %s", dest, g_strerror (errno));
    if (fd >= 0)
      close (fd);
    return false;
  }
  argv[n++] = "qemu-img";
  argv[n++] = "convert";
  argv[n++] = "-n";
  argv[n++] = "--target-is-zero";
  argv[n++] = "-t";
  argv[n++] = "none";
  argv[n++] = "-W";
  argv[n++] = "-m";
  argv[n++] = "8";
  if (rate) {
    argv[n++] = "-r";
    argv[n++] = rate;
  }
  for (char **a = tls_argv; *a; a++)
    argv[n++] = *a;
  argv[n++] = "-O";
  argv[n++] = "raw";
  argv[n++] = url;
  argv[n++] = dest;
  argv[n] = NULL;
  if (!g_spawn_async_with_pipes (NULL, (char **) argv, NULL,
                                 G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                                 G_SPAWN_STDOUT_TO_DEV_NULL, pull_child_setup,
                                 &parent, &child, NULL, NULL, &out_fd, &err)) {
    close (fd);
    g_propagate_prefixed_error (error, err, "disk %s: qemu-img convert: ",
                                d->name);
    return false;
  }
  for (;;) {
    pid_t r = waitpid (child, &status, WNOHANG);
    struct stat st;

    if (r == child)
      break;
    if (fstat (fd, &st) == 0 && st.st_blocks != last_blocks) {
      last_blocks = st.st_blocks;
      last = g_get_monotonic_time ();
      if (last - last_event > 250000) {
        uint64_t done = (uint64_t) st.st_blocks * 512;

        last_event = last;
        sm_mig_emit (o->event, o->opaque, "progress", "s:what", "layer",
                     "s:disk", d->name, "s:file", dest, "u:done",
                     MIN (done, l->allocated), "u:total", l->allocated, NULL);
      }
    }
    if ((g_get_monotonic_time () - last) / 1000 > stall || sm_interrupted ()) {
      kill (child, SIGKILL);
      waitpid (child, &status, 0);
      close (out_fd);
      close (fd);
      if (sm_interrupt_check (error))
        return false;
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "disk %s: the copy of layer %s from %s made no progress "
                   "for %d s: is the link to the source down?", d->name,
                   l->file, uri, stall / 1000);
      return false;
    }
    g_usleep (20000);
  }
  if (!g_spawn_check_wait_status (status, NULL)) {
    char buf[2048];
    ssize_t k = read (out_fd, buf, sizeof buf - 1);

    buf[k > 0 ? k : 0] = '\0';
    close (out_fd);
    close (fd);
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "disk %s: the copy of layer %s from the source (%s) failed: "
                 "%s", d->name, l->file, uri, g_strstrip (buf));
    return false;
  }
  close (out_fd);
  if (fdatasync (fd) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: fdatasync: %s", dest,
                 g_strerror (errno));
    close (fd);
    return false;
  }
  close (fd);
  copy = sm_layer_copy_new (d->name, l->file, dest, l->format, l->backing,
                            l->backing_format);
  return sm_layer_copy_set_backing (copy, error);
}

/* One layer to pull, for a pulling thread. */
typedef struct {
  const SmMigCookie *c;
  const SmMigDisk *d;
  const SmMigLayer *l;
  const char *dest;
  const SmMigDestOptions *o;
  GError *err;
} Pull;

static gpointer
pull_thread (gpointer data)
{
  Pull *p = data;

  pull_layer (p->c, p->d, p->l, p->dest, p->o, &p->err);
  return NULL;
}

/* How many layers are pulled at once: two streams keep a disk and a link
 * busy, more only interleave the files (as the local layer copy). */
#define PULL_STREAMS 2

/* Pulls every COPY layer of COOKIE into its pre-created file (PLANS),
 * PULL_STREAMS at a time, and counts their bytes in the cookie. */
static bool
pull_layers (SmMigCookie *c, GPtrArray *plans, const SmMigDestOptions *o,
             GError **error)
{
  g_autoptr(GPtrArray) pulls = g_ptr_array_new_with_free_func (g_free);
  GError *first = NULL;

  for (guint i = 0; i < c->disks->len; i++) {
    const SmMigDisk *d = c->disks->pdata[i];
    const SmPrecreatePlan *p = plans->pdata[i];

    for (guint j = 0; p && j < d->layers->len; j++) {
      const SmMigLayer *l = d->layers->pdata[j];
      Pull *pull;

      if (l->role != SM_MIG_LAYER_COPY)
        continue;
      pull = g_new0 (Pull, 1);
      pull->c = c;
      pull->d = d;
      pull->l = l;
      pull->dest = ((SmPrecreateLayer *) p->layers->pdata[j])->path;
      pull->o = o;
      g_ptr_array_add (pulls, pull);
    }
  }
  for (guint k = 0; k < pulls->len && !first; k += PULL_STREAMS) {
    GThread *t[PULL_STREAMS] = { NULL };
    guint n = MIN (PULL_STREAMS, pulls->len - k);

    for (guint m = 0; m < n; m++)
      t[m] = g_thread_new ("pull", pull_thread, pulls->pdata[k + m]);
    for (guint m = 0; m < n; m++) {
      Pull *p = pulls->pdata[k + m];

      g_thread_join (t[m]);
      if (p->err) {
        if (!first)
          first = p->err;
        else
          g_error_free (p->err);
        continue;
      }
      c->disk_bytes += p->l->allocated;
      sm_mig_emit (o->event, o->opaque, "progress", "s:what", "layer",
                   "s:disk", p->d->name, "s:file", p->dest, "u:done",
                   p->l->allocated, "u:total", p->l->allocated, NULL);
    }
  }
  if (first) {
    g_propagate_error (error, first);
    return false;
  }
  return true;
}

/* Checks that every migrated disk of the destination QEMU runs on its copy
 * in the domain, and exports each. */
static bool
export_disks (SmQmp *qmp, SmMigCookie *c, const SmMigDestOptions *o,
              GError **error)
{
  g_autoptr(GPtrArray) disks = sm_block_query_disks (qmp, error);

  if (!disks)
    return false;
  for (guint i = 0; i < c->disks->len; i++) {
    const SmMigDisk *d = c->disks->pdata[i];
    const SmBlockDisk *bd = NULL;
    g_autofree char *id = g_strdup_printf ("sm-export-%u", i);
    g_autofree char *top = NULL;
    GError *err = NULL;

    if (!d->migrate)
      continue;
    for (guint k = 0; k < disks->len && !bd; k++)
      if (sm_block_disk_matches (disks->pdata[k], d->name))
        bd = disks->pdata[k];
    if (!bd) {
      g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                   "the destination QEMU has no disk %s: its command line "
                   "lacks it (check --dest-qemu)", d->name);
      return false;
    }
    top = sm_block_disk_top (bd) ? realpath (sm_block_disk_top (bd), NULL) : NULL;
    if (g_strcmp0 (top, d->dest_top) != 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "the destination QEMU opened %s for disk %s, not its copy "
                   "%s: its command line names the disk's file differently "
                   "(give the command line with --dest-qemu)",
                   sm_block_disk_top (bd) ? sm_block_disk_top (bd) : "nothing",
                   d->name, d->dest_top);
      return false;
    }
    if (!sm_qmp_run (qmp, "block-export-add",
                     sm_qmp_args (&err, "s:type", "nbd", "s:id", id,
                                  "s:node-name", bd->node_name,
                                  "s:name", d->export, "b:writable", true,
                                  NULL), &err)) {
      g_propagate_prefixed_error (error, err, "disk %s: cannot export it: ",
                                  d->name);
      return false;
    }
  }
  (void) o;
  return true;
}

/* COMMAND {uri: URI}, in band or (OOB) out of band. */
static bool
listen_on (SmQmp *qmp, const char *command, const char *uri, bool oob,
           GError **error)
{
  json_object *args = sm_qmp_args (NULL, "s:uri", uri, NULL);
  g_autoptr(json_object) r = NULL;

  if (!oob)
    return sm_qmp_run (qmp, command, args, error);
  r = sm_qmp_execute_oob (qmp, command, args, error);
  return r != NULL;
}

bool
sm_mig_listen (SmQmp *qmp, const SmMigCookie *c, const SmMigDestOptions *o,
               const char *command, const char *sock_name, bool oob,
               char **uri_out, GError **error)
{
  GError *err = NULL;
  int lo = o->port_min > 0 ? o->port_min : SM_MIG_PORT_MIN;
  int hi = o->port_max > 0 ? o->port_max : (lo <= SM_MIG_PORT_MAX ? SM_MIG_PORT_MAX : lo);

  if (g_str_has_prefix (c->nbd_uri, "unix:")) {
    g_autofree char *path = g_build_filename (c->dest_run_dir, sock_name, NULL);
    g_autofree char *uri = g_strconcat ("unix:", path, NULL);

    unlink (path);
    if (!listen_on (qmp, command, uri, oob, error))
      return false;
    *uri_out = g_steal_pointer (&uri);
    return true;
  }
  for (int port = lo; port <= hi; port++) {
    g_autofree char *uri = strchr (c->dest_host, ':') ?
      g_strdup_printf ("tcp:[%s]:%d", c->dest_host, port) :
      g_strdup_printf ("tcp:%s:%d", c->dest_host, port);

    if (g_strcmp0 (c->nbd_uri, uri) == 0)
      continue;
    g_clear_error (&err);
    if (listen_on (qmp, command, uri, oob, &err)) {
      *uri_out = g_steal_pointer (&uri);
      return true;
    }
    if (!strstr (err->message, "in use"))
      break;
  }
  if (err && err->code == SM_ERROR_QMP && !strstr (err->message, "in use")) {
    g_propagate_error (error, err);
    return false;
  }
  g_set_error (error, SM_ERROR, SM_ERROR_BUSY,
               "cannot listen for the incoming migration on %s, ports "
               "%d-%d: %s (free a port or give another --port-range)",
               c->dest_host, lo, hi, err ? err->message : "no port free");
  g_clear_error (&err);
  return false;
}

static bool
start_incoming (SmQmp *qmp, SmMigCookie *c, const SmMigDestOptions *o,
                GError **error)
{
  g_clear_pointer (&c->migrate_uri, g_free);
  return sm_mig_listen (qmp, c, o, "migrate-incoming", "migrate.sock", false,
                        &c->migrate_uri, error);
}

/* The destination's RAM capabilities: events, late-block-activate (the
 * guest's images are activated by our `cont`), postcopy-ram, multifd; set
 * before migrate-incoming.  QEMU's own refusal of postcopy-ram (no
 * userfaultfd) is SM_ERROR_UNSUPPORTED. */
static bool
set_incoming_capabilities (SmQmp *qmp, const SmMigCookie *c, GError **error)
{
  GError *err = NULL;

  if (!sm_qmp_run (qmp, "migrate-set-capabilities",
                   sm_qmp_args (&err, "j:capabilities",
                                sm_mig_capabilities ("events", true,
                                                     "late-block-activate", true,
                                                     "postcopy-ram", c->postcopy,
                                                     "multifd", c->parallel > 0,
                                                     NULL), NULL), &err)) {
    if (c->postcopy)
      g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                   "the destination QEMU refuses post-copy (%s): it needs "
                   "userfaultfd; migrate without --postcopy, or with "
                   "--postcopy-fallback", err->message);
    else
      g_propagate_error (error, g_steal_pointer (&err));
    g_clear_error (&err);
    return false;
  }
  if (c->parallel > 0)
    return sm_qmp_run (qmp, "migrate-set-parameters",
                       sm_qmp_args (error, "i:multifd-channels", c->parallel,
                                    NULL), error);
  return true;
}

/* A post-copy migration to a destination that cannot (userfaultfd): refused
 * before anything is made, or pre-copy with --postcopy-fallback, said in a
 * message event and in the cookie. */
static bool
check_postcopy (SmMigCookie *c, const SmMigDestOptions *o, GError **error)
{
  GError *err = NULL;

  if (!c->postcopy || sm_mig_postcopy_supported (&err))
    return true;
  if (!c->postcopy_fallback) {
    g_propagate_prefixed_error (error, err, "post-copy is impossible on "
                                "this destination (%s): ", g_get_host_name ());
    return false;
  }
  c->postcopy = false;
  c->postcopy_after_precopy = false;
  g_free (c->postcopy_refused);
  c->postcopy_refused = g_strdup (err->message);
  {
    g_autofree char *msg = g_strdup_printf (
      "post-copy is impossible on the destination (%s): running pre-copy "
      "instead (--postcopy-fallback)", err->message);
    sm_mig_emit (o->event, o->opaque, "message", "s:message", msg, NULL);
  }
  g_error_free (err);
  return true;
}

/* The run directory: given (must be empty or absent) or STATE/run/ID. */
static char *
make_run_dir (const SmMigCookie *c, const SmMigDestOptions *o, bool *created,
              GError **error)
{
  g_autofree char *dir = o->run_dir ? g_canonicalize_filename (o->run_dir, NULL)
                                    : g_build_filename (o->state_dir, "run",
                                                        c->id, NULL);
  g_autoptr(GDir) d = NULL;

  *created = false;
  if (!g_file_test (dir, G_FILE_TEST_EXISTS)) {
    if (g_mkdir_with_parents (dir, 0700) < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot create the run "
                   "directory %s: %s", dir, g_strerror (errno));
      return NULL;
    }
    *created = true;
    return g_steal_pointer (&dir);
  }
  d = g_dir_open (dir, 0, NULL);
  if (!d || g_dir_read_name (d)) {
    g_set_error (error, SM_ERROR, SM_ERROR_EXISTS,
                 "the run directory %s is not an empty directory: the "
                 "destination QEMU's sockets go there (give an empty or new "
                 "--dest-run-dir)", dir);
    return NULL;
  }
  return g_steal_pointer (&dir);
}

bool
sm_migrate_prepare (SmMigCookie *c, const SmMigDestOptions *o, bool dry_run,
                    GError **error)
{
  g_autoptr(GPtrArray) plans = NULL;
  g_autoptr(SmJournal) journal = NULL;
  g_autoptr(SmCreatedFiles) created = NULL;
  g_autoptr(SmQemuProc) proc = NULL;
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(GHashTable) map = NULL;
  g_autoptr(GHashTable) formats = NULL;
  g_auto(GStrv) argv = NULL;
  g_autofree char *domain = NULL;
  g_autofree char *created_path = NULL;
  g_autofree char *qmp_path = NULL;
  g_autofree char *ctl_path = NULL;
  g_autofree char *log_path = NULL;
  g_autofree char *tls_srv = sm_mig_tls_server_id (c);
  SmMigIncoming in = { 0 };
  bool run_created = false;
  GError *err = NULL;
  guint i, j;

  if (!o->domain) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "no destination storage domain (give --dest-domain)");
    return false;
  }
  domain = realpath (o->domain, NULL);
  if (!domain || !g_file_test (domain, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "destination storage domain %s: not a directory on this "
                 "host (create it with 'mkdir -p %s' there, or give "
                 "another --dest-domain)", o->domain, o->domain);
    return false;
  }
  g_free (c->dest_domain);
  c->dest_domain = g_strdup (domain);
  if (!sm_mig_check_transport (c, o->tunnel, o->tls, o->unix_sockets, error) ||
      (o->tls && !sm_mig_tls_check_dir (o->tls_creds, error)) ||
      !check_postcopy (c, o, error))
    return false;
  if (!o->qemu_args && !c->qemu_argv) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "the source's QEMU command line is unknown (its process "
                 "could not be read): give the destination's with "
                 "--dest-qemu");
    return false;
  }
  plans = plan_disks (c, domain, o->allow_larger, error);
  if (!plans)
    return false;
  for (i = 0; i < plans->len; i++)
    if (plans->pdata[i] && !sm_precreate_check (plans->pdata[i], 0, error))
      return false;
  if (dry_run) {
    g_free (c->dest_run_dir);
    c->dest_run_dir = o->run_dir ? g_canonicalize_filename (o->run_dir, NULL)
                                 : g_build_filename (o->state_dir, "run",
                                                     c->id, NULL);
    return true;
  }

  in.run_dir = make_run_dir (c, o, &run_created, error);
  if (!in.run_dir)
    return false;
  in.run_dir_created = run_created;
  g_free (c->dest_run_dir);
  c->dest_run_dir = g_strdup (in.run_dir);
  journal = sm_mig_incoming_journal_open (o->state_dir, c, in.run_dir, run_created,
                                   &err);
  if (!journal) {
    sm_mig_incoming_cleanup (&in, NULL);
    sm_mig_incoming_clear (&in);
    g_propagate_error (error, err);
    return false;
  }
  created_path = sm_mig_incoming_path (o->state_dir, c->id, ".created");
  in.created = g_strdup (created_path);
  created = sm_created_files_new ();

  /* the files */
  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "prepare", NULL);
  if (!sm_mig_journal_step (journal, "create", "begin", NULL, &err))
    goto fail;
  for (i = 0; i < plans->len; i++) {
    SmPrecreatePlan *p = plans->pdata[i];

    if (!p)
      continue;
    for (j = 0; j < p->layers->len; j++)
      sm_created_files_add (created, ((SmPrecreateLayer *) p->layers->pdata[j])->path);
    if (!sm_created_files_save (created, created_path, &err))
      goto fail;
    {
      g_autoptr(SmCreatedFiles) mine = sm_created_files_new ();
      if (!sm_precreate_execute (p, 0, mine, &err))
        goto fail;
    }
  }
  if (!sm_mig_journal_step (journal, "create", "end", NULL, &err))
    goto fail;

  /* the lower layers, before the QEMU that opens them starts */
  if (c->layers_uri) {
    if (!sm_mig_journal_step (journal, "pull-layers", "begin", NULL, &err))
      goto fail;
    if (!pull_layers (c, plans, o, &err)) {
      sm_mig_tls_hint (c, o->tls_creds, c->source_host, "--source-host",
                       &err);
      goto fail;
    }
    if (!sm_mig_journal_step (journal, "pull-layers", "end", NULL, &err))
      goto fail;
  }

  /* the destination QEMU */
  qmp_path = g_build_filename (in.run_dir, "snapmig.qmp", NULL);
  ctl_path = sm_mig_ctl_qmp_path (in.run_dir);
  log_path = g_build_filename (in.run_dir, "qemu.log", NULL);
  map = g_hash_table_new (g_str_hash, g_str_equal);
  formats = g_hash_table_new (g_str_hash, g_str_equal);
  for (i = 0; i < c->disks->len; i++) {
    const SmMigDisk *d = c->disks->pdata[i];
    const SmMigLayer *top = d->layers->len ? d->layers->pdata[0] : NULL;

    if (!d->migrate)
      continue;
    g_hash_table_insert (map, d->source_top, d->dest_top);
    if (top && top->format != d->format)
      g_hash_table_insert (formats, d->dest_top,
                           (char *) sm_image_format_to_string (top->format));
  }
  {
    SmQemuRewrite rw = { .path_map = map, .format_map = formats,
                         .run_dir = in.run_dir,
                         .qmp_path = qmp_path, .incoming = NULL,
                         .ctl_qmp_path = ctl_path };
    g_free (c->dest_user_qmp);
    c->dest_user_qmp = NULL;
    argv = o->qemu_args ?
      sm_qemu_cmdline_from_string (o->qemu_args, &rw, &c->dest_user_qmp, &err) :
      sm_qemu_cmdline_rewrite ((const char *const *) c->qemu_argv, &rw,
                               &c->dest_user_qmp, &err);
  }
  if (!argv ||
      !sm_mig_journal_step (journal, "qemu", "begin", NULL, &err))
    goto fail;
  proc = sm_qemu_spawn ((const char *const *) argv, log_path, qmp_path,
                        sm_mig_dest_stall_ms (o), &err);
  if (!proc)
    goto fail;
  in.pid = proc->pid;
  in.start_time = proc->start_time;
  in.qmp = g_strdup (qmp_path);
  c->dest_pid = proc->pid;
  g_free (c->dest_qmp);
  c->dest_qmp = g_strdup (qmp_path);
  if (!sm_mig_incoming_journal_qemu (journal, proc, qmp_path, &err))
    goto fail;
  qmp = sm_qmp_connect (qmp_path, sm_mig_dest_stall_ms (o), &err);
  if (!qmp)
    goto fail;
  if (!sm_mig_tls_dest_setup (qmp, c, o->tls_creds, &err) ||
      !set_incoming_capabilities (qmp, c, &err) ||
      !sm_mig_journal_step (journal, "nbd-server", "begin", NULL, &err) ||
      !sm_mig_nbd_server_start (qmp, o->unix_sockets,
                                c->dest_host, in.run_dir, c->id, "nbd",
                                o->port_min, o->port_max, tls_srv,
                                &c->nbd_uri, &err) ||
      !export_disks (qmp, c, o, &err) ||
      !start_incoming (qmp, c, o, &err) ||
      !sm_mig_journal_step (journal, "nbd-server", "end", NULL, &err))
    goto fail;
  g_free (c->phase);
  c->phase = g_strdup ("prepare");
  sm_mig_incoming_clear (&in);
  return true;

fail:
  {
    GError *undo = NULL;

    g_clear_pointer (&qmp, sm_qmp_free);
    if (proc && log_path && err->code != SM_ERROR_FAILED) {
      g_autofree char *log = NULL;
      if (g_file_get_contents (log_path, &log, NULL, NULL) && *g_strstrip (log)) {
        GError *more = g_error_new (SM_ERROR, err->code, "%s (the destination "
                                    "QEMU's log: %s)", err->message, log);
        g_error_free (err);
        err = more;
      }
    }
    sm_mig_journal_step (journal, "rollback", "begin", err, NULL);
    if (!sm_mig_incoming_cleanup (&in, &undo)) {
      g_prefix_error (&err, "(and the clean-up failed: %s; run 'snapmig "
                      "recover --incoming --state-dir %s') ", undo->message,
                      o->state_dir);
      g_error_free (undo);
      sm_mig_incoming_clear (&in);
      g_propagate_error (error, err);
      return false;
    }
    sm_journal_finish (g_steal_pointer (&journal), NULL);
    sm_mig_incoming_clear (&in);
    g_propagate_error (error, err);
    return false;
  }
}
