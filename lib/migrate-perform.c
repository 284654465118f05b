/* libsnapmig — the source's perform phase of a cross-host migration (disks
 * mirrored, the RAM moved, the mirrors completed at the switchover), and
 * the QMP sequences both sides share (lib/migrate.h). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockjob.h"
#include "interrupt.h"
#include "journal.h"
#include "json-util.h"
#include "lsm.h"
#include "migrate-private.h"
#include "tunnel.h"
#include "precreate.h"
#include "qemu-proc.h"

#define POLL_MS 100

/* How long perform waits for the destination's finish to be up before it
 * starts the RAM migration anyway (a finish that does not say so, from an
 * older snapmig, costs this much once). */
#define DEST_READY_MS 3000

/* How long an NBD request of a mirror waits for its client to reconnect
 * before it fails (and the mirror stops, to be resumed): a blip costs a
 * pause and nothing else, a longer outage is said in a message.  Short,
 * because QEMU drains a node's requests (block-job-cancel, blockdev-del)
 * only once they are done: with the destination gone, each such command
 * of a roll-back, and the monitor with it, waits this long. */
#define MIRROR_RECONNECT_S 2

/* ---- shared sequences -------------------------------------------------- */

bool
sm_mig_nbd_server_start (SmQmp *qmp, bool unix_socket, const char *host,
                         const char *dir, const char *id, const char *what,
                         int port_min, int port_max,
                         const char *tls_creds, char **uri, GError **error)
{
  GError *err = NULL;
  int port;

  if (unix_socket) {
    g_autofree char *name = g_strdup_printf ("%s-%s.sock",
                                             strlen (id) > 8 ? id + strlen (id) - 8 : id,
                                             what);
    g_autofree char *path = g_build_filename (dir, name, NULL);
    struct stat sb;

    /* a stale socket of an earlier attempt; nothing else is removed */
    if (lstat (path, &sb) == 0 && S_ISSOCK (sb.st_mode))
      unlink (path);
    if (!sm_qmp_run (qmp, "nbd-server-start",
                     sm_qmp_args (&err, "j:addr",
                                  sm_qmp_args (&err, "s:type", "unix", "j:data",
                                               sm_qmp_args (&err, "s:path", path,
                                                            NULL), NULL),
                                  "S:tls-creds", tls_creds, NULL), &err)) {
      g_set_error (error, SM_ERROR, err->code,
                   "cannot start the NBD server on %s: %s", path, err->message);
      g_error_free (err);
      return false;
    }
    *uri = g_strconcat ("unix:", path, NULL);
    return true;
  }
  if (port_min <= 0)
    port_min = SM_MIG_PORT_MIN;
  if (port_max <= 0)
    port_max = port_min <= SM_MIG_PORT_MAX ? SM_MIG_PORT_MAX : port_min;
  for (port = port_min; port <= port_max; port++) {
    g_autofree char *p = g_strdup_printf ("%d", port);

    g_clear_error (&err);
    if (sm_qmp_run (qmp, "nbd-server-start",
                    sm_qmp_args (&err, "j:addr",
                                 sm_qmp_args (&err, "s:type", "inet", "j:data",
                                              sm_qmp_args (&err, "s:host", host,
                                                           "s:port", p, NULL),
                                              NULL),
                                 "S:tls-creds", tls_creds, NULL), &err)) {
      *uri = strchr (host, ':') ? g_strdup_printf ("tcp:[%s]:%d", host, port)
                                : g_strdup_printf ("tcp:%s:%d", host, port);
      return true;
    }
    if (!err || err->code != SM_ERROR_QMP || !strstr (err->message, "in use"))
      break;
  }
  g_set_error (error, SM_ERROR, SM_ERROR_BUSY,
               "cannot start the NBD server on %s, ports %d-%d: %s (free a "
               "port or give another --port-range)", host, port_min, port_max,
               err ? err->message : "no port free");
  g_clear_error (&err);
  return false;
}

void
sm_mig_del_export_node (SmQmp *qmp, const char *node)
{
  for (int i = 0; i < 50; i++) {
    GError *err = NULL;

    sm_qmp_run (qmp, "block-export-del",
                sm_qmp_args (NULL, "s:id", node, NULL), NULL);
    if (sm_qmp_run (qmp, "blockdev-del",
                    sm_qmp_args (NULL, "s:node-name", node, NULL), &err))
      return;
    if (err->code != SM_ERROR_QMP ||
        g_strcmp0 (sm_qmp_last_error_class (qmp), "GenericError") != 0 ||
        strstr (err->message, "Failed to find")) {
      g_error_free (err);
      return;
    }
    g_error_free (err);
    sm_block_poll_pause (qmp, 20);
  }
}

static bool
status_in (const char *status, const char *const *states)
{
  for (; *states; states++)
    if (strcmp (status, *states) == 0)
      return true;
  return false;
}

bool
sm_mig_wait_status (SmQmp *qmp, const char *const *states, int stall_ms,
                    int watch_fd, SmMigEventFn fn, void *opaque,
                    char **status_out, uint64_t *ram_bytes, GError **error)
{
  SmMigWait w = { .states = states, .stall_ms = stall_ms,
                  .watch_fd = watch_fd, .fn = fn, .opaque = opaque,
                  .ram_bytes = ram_bytes };

  return sm_mig_wait (qmp, &w, status_out, error);
}

void
sm_mig_emit_ram_progress (const SmMigWait *w, json_object *ram)
{
  uint64_t done = 0, total = 0, remaining = 0, requests = 0;
  json_object *o;

  if (!w->fn)
    return;
  sm_json_get_uint64 (ram, "transferred", &done);
  sm_json_get_uint64 (ram, "total", &total);
  sm_json_get_uint64 (ram, "remaining", &remaining);
  o = json_object_new_object ();
  json_object_object_add (o, "event", json_object_new_string ("progress"));
  json_object_object_add (o, "what", json_object_new_string ("ram"));
  json_object_object_add (o, "done", json_object_new_int64 ((int64_t) done));
  json_object_object_add (o, "total", json_object_new_int64 ((int64_t) total));
  json_object_object_add (o, "remaining",
                          json_object_new_int64 ((int64_t) remaining));
  if (w->stage) {
    json_object_object_add (o, "stage", json_object_new_string (w->stage));
    if (sm_json_get_uint64 (ram, "postcopy-requests", &requests))
      json_object_object_add (o, "postcopy-requests",
                              json_object_new_int64 ((int64_t) requests));
  }
  w->fn (o, w->opaque);
  json_object_put (o);
}

bool
sm_mig_wait (SmQmp *qmp, const SmMigWait *w, char **status_out,
             GError **error)
{
  gint64 last_change = g_get_monotonic_time ();
  uint64_t last_done = G_MAXUINT64;
  g_autofree char *last_status = NULL;

  for (;;) {
    g_autoptr(json_object) r = sm_qmp_execute_type (qmp, "query-migrate", NULL,
                                                     json_type_object, error);
    const char *status;
    json_object *ram;
    uint64_t done = 0;

    if (!r)
      return false;
    status = sm_json_get_string (r, "status");
    if (!status)
      status = "none";
    ram = sm_json_get_object (r, "ram");
    if (ram) {
      sm_json_get_uint64 (ram, "transferred", &done);
      if (w->ram_bytes)
        *w->ram_bytes = done;
    }
    if (done != last_done || g_strcmp0 (status, last_status) != 0) {
      last_change = g_get_monotonic_time ();
      if (ram && done != last_done)
        sm_mig_emit_ram_progress (w, ram);
      last_done = done;
      g_free (last_status);
      last_status = g_strdup (status);
    }
    if (status_in (status, w->states)) {
      *status_out = g_strdup (status);
      return true;
    }
    if (strcmp (status, "failed") == 0 || strcmp (status, "cancelled") == 0) {
      const char *desc = sm_json_get_string (r, "error-desc");
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "the migration of the VM's state %s%s%s", status,
                   desc ? ": " : "", desc ? desc : "");
      return false;
    }
    if (w->tick && !w->tick (qmp, r, w->data, error))
      return false;
    if (w->stall_ms > 0 &&
        (g_get_monotonic_time () - last_change) / 1000 > w->stall_ms) {
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "the migration made no progress for %d s (status %s): "
                   "is the link to the destination down?", w->stall_ms / 1000,
                   status);
      return false;
    }
    if (sm_interrupt_check (error))
      return false;
    if (w->watch_fd >= 0) {
      struct pollfd p = { .fd = w->watch_fd, .events = POLLIN };
      char byte;

      if (poll (&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR) ||
                                  read (w->watch_fd, &byte, 1) <= 0)) {
        g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
                     "the migration's other side went away before it "
                     "completed (status %s)", status);
        return false;
      }
    }
    {
      /* a MIGRATION event (status change) ends the wait at once */
      GError *e = NULL;
      json_object *ev = sm_qmp_wait_event (qmp, "MIGRATION", NULL, NULL,
                                           POLL_MS, &e);
      if (ev) {
        json_object_put (ev);
      } else if (!g_error_matches (e, SM_ERROR, SM_ERROR_TIMEOUT)) {
        g_propagate_error (error, e);
        return false;
      } else {
        g_error_free (e);
      }
    }
  }
}

/* ---- perform -------------------------------------------------------------- */

char *
sm_mig_mirror_job_id (const char *disk)
{
  return sm_block_job_id ("snapmig-migrate-", disk);
}

char *
sm_mig_nbd_node (guint index)
{
  return g_strdup_printf ("sm-nbd-%u", index);
}

static bool
start_mirrors (SmQmp *qmp, const SmMigCookie *c, const SmMigOptions *o,
               GError **error)
{
  g_autofree char *uri = NULL;
  int link_ms = sm_mig_link_timeout_ms (o->link_timeout_ms);

  for (guint i = 0; i < c->disks->len; i++) {
    const SmMigDisk *d = c->disks->pdata[i];
    g_autoptr(SmBlockDisk) bd = NULL;
    g_autofree char *node = sm_mig_nbd_node (i);
    g_autofree char *job = sm_mig_mirror_job_id (d->name);
    g_autofree char *tls = sm_mig_tls_client_id (c);
    json_object *server;
    GError *err = NULL;

    if (!d->migrate)
      continue;
    bd = sm_block_query_disk (qmp, d->name, error);
    if (!bd)
      return false;
    g_free (uri);
    uri = sm_mig_source_endpoint (o, c->nbd_uri, error);
    if (!uri)
      return false;
    server = sm_mig_uri_to_socket_address (uri, error);
    if (!server)
      return false;
    /* a lost link: the client's requests wait while it reconnects (up
     * to MIRROR_RECONNECT_S); one that failed then stops the mirror (its
     * regions stay dirty) until wait_mirrors_ready resumes it, for the
     * rest of the link timeout */
    if (!sm_qmp_run (qmp, "blockdev-add",
                     sm_qmp_args (&err, "s:driver", "nbd", "s:node-name", node,
                                  "j:server", server, "s:export", d->export,
                                  "i:reconnect-delay",
                                  MIN ((link_ms + 999) / 1000,
                                       MIRROR_RECONNECT_S),
                                  "S:tls-creds", tls, "S:tls-hostname",
                                  tls ? c->dest_host : NULL, NULL), &err) ||
        !sm_qmp_run (qmp, "blockdev-mirror",
                     sm_qmp_args (&err, "s:job-id", job,
                                  "s:device", bd->node_name, "s:target", node,
                                  "s:sync", c->storage == SM_MIG_STORAGE_FLAT ?
                                            "full" : "top",
                                  "P:speed", c->bandwidth,
                                  "S:copy-mode", c->copy_mode,
                                  "s:on-target-error", "stop",
                                  "b:auto-dismiss", false,
                                  NULL), &err)) {
      sm_mig_tls_hint (c, o->tls_creds, c->dest_host, "--dest-host", &err);
      g_set_error (error, SM_ERROR, err->code,
                   "disk %s: cannot start its copy to the destination's "
                   "export %s at %s: %s", d->name, d->export, c->nbd_uri,
                   err->message);
      g_error_free (err);
      return false;
    }
  }
  return true;
}

/* The error QEMU gives for the concluded job ID (query-block-jobs'
 * "error"), or NULL. */
static char *
job_error (SmQmp *qmp, const char *id)
{
  g_autoptr(json_object) r = sm_qmp_execute_type (qmp, "query-block-jobs",
                                                  NULL, json_type_array, NULL);

  for (size_t k = 0; r && k < json_object_array_length (r); k++) {
    json_object *j = json_object_array_get_idx (r, k);

    if (g_strcmp0 (sm_json_get_string (j, "device"), id) == 0 &&
        sm_json_get_string (j, "error"))
      return g_strdup (sm_json_get_string (j, "error"));
  }
  return NULL;
}

/* A lost link while the mirrors run: each mirror stopped by its target's
 * error (on-target-error=stop, io-status "failed": QEMU keeps the failed
 * regions dirty) is resumed, once a second, until it runs again or the
 * link timeout passed since the link was lost. */
typedef struct {
  gint64 lost_since;           /* 0: the link is up */
  gint64 last_resume;
} LinkWatch;

/* The error of a link to the destination that stayed down for longer
 * than the link timeout (WHY: what was seen), with the tunnel's own reason
 * when it gave up. */
static void
link_down_error (const SmMigCookie *c, const SmMigOptions *o, const char *why,
                 GError **error)
{
  int link_ms = sm_mig_link_timeout_ms (o->link_timeout_ms);
  g_autofree char *tunnel = NULL;
  SmTunnelState ts;
  GError *terr = NULL;

  if (o->tunnel_handle && !sm_tunnel_state (o->tunnel_handle, &ts, &terr)) {
    tunnel = g_strdup_printf ("; the tunnel could not be started again: %s",
                              terr->message);
    g_error_free (terr);
  }
  g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
               "the link to the destination (%s) stayed down for more than "
               "the link timeout, %d s (--link-timeout): %s%s", c->nbd_uri,
               link_ms / 1000, why, tunnel ? tunnel : "");
}

/* Resumes the stopped mirror JOB (a lost link) unless LW's timeout
 * passed; false with the error then.  WHY is QEMU's error. */
static bool
link_lost (SmQmp *qmp, LinkWatch *lw, const SmMigCookie *c,
           const SmMigOptions *o, const SmMigDisk *d, const char *job,
           const char *why, GError **error)
{
  gint64 now = g_get_monotonic_time ();
  int link_ms = sm_mig_link_timeout_ms (o->link_timeout_ms);

  if (!lw->lost_since) {
    g_autofree char *msg = g_strdup_printf (
      "disk %s: the link to the destination (%s) failed (%s); the copy "
      "resumes where it was when the link is back (--link-timeout %d s)",
      d->name, c->nbd_uri, why ? why : "write error", link_ms / 1000);

    lw->lost_since = now;
    sm_mig_emit (o->event, o->opaque, "message", "s:message", msg, NULL);
  }
  if ((now - lw->lost_since) / 1000 > link_ms) {
    g_autofree char *what = g_strdup_printf ("disk %s's copy stopped: %s",
                                             d->name, why ? why : "write error");

    link_down_error (c, o, what, error);
    return false;
  }
  if ((now - lw->last_resume) / 1000 >= 1000) {
    lw->last_resume = now;
    sm_qmp_run (qmp, "block-job-resume",
                sm_qmp_args (NULL, "s:device", job, NULL), NULL);
  }
  return true;
}

/* How long the disks' copy may make no progress before the link counts as
 * down: the link timeout (a dead link that reports no error, TCP
 * retransmitting, shows only as no progress), not longer than STALL_MS, but
 * never less than two of the mirror's progress steps (16 MiB) at the
 * bandwidth limit. */
static int
no_progress_ms (const SmMigCookie *c, const SmMigOptions *o, int stall_ms)
{
  int ms = MIN (stall_ms, sm_mig_link_timeout_ms (o->link_timeout_ms));
  uint64_t slack = c->bandwidth ? (UINT64_C (32) << 20) * 1000 / c->bandwidth : 0;

  return (int) MAX ((uint64_t) ms, MIN (slack, (uint64_t) G_MAXINT / 2));
}

/* Every mirror READY, with progress; a job that ends, a stall, or a link
 * lost for longer than the link timeout fails. */
static bool
wait_mirrors_ready (SmQmp *qmp, SmMigCookie *c, const SmMigOptions *o,
                    int stall_ms, GError **error)
{
  gint64 last_change = g_get_monotonic_time ();
  uint64_t last_sum = G_MAXUINT64;
  LinkWatch lw = { 0 };

  for (;;) {
    g_autoptr(GPtrArray) jobs = sm_block_query_jobs (qmp, error);
    guint ready = 0, n = 0, stopped = 0;
    uint64_t sum = 0;

    if (!jobs)
      return false;
    for (guint i = 0; i < c->disks->len; i++) {
      const SmMigDisk *d = c->disks->pdata[i];
      g_autofree char *id = NULL;
      SmBlockJob *job;

      if (!d->migrate)
        continue;
      n++;
      id = sm_mig_mirror_job_id (d->name);
      job = sm_block_find_job (jobs, id);
      if (!job || g_strcmp0 (job->status, "concluded") == 0 ||
          g_strcmp0 (job->io_status, "nospace") == 0) {
        g_autofree char *why = job ? job_error (qmp, id) : NULL;

        g_set_error (error, SM_ERROR, job && job->io_status &&
                     strcmp (job->io_status, "nospace") == 0 ?
                     SM_ERROR_NO_SPACE : SM_ERROR_FAILED,
                     "disk %s: its copy to the destination's export at %s "
                     "failed: %s", d->name, c->nbd_uri,
                     why ? why : job && job->io_status ?
                     job->io_status : "the job ended");
        return false;
      }
      if (g_strcmp0 (job->io_status, "failed") == 0) {
        g_autofree char *why = job_error (qmp, id);

        stopped++;
        if (!link_lost (qmp, &lw, c, o, d, id, why, error))
          return false;
      }
      sum += job->offset;
      sm_mig_emit (o->event, o->opaque, "progress", "s:what", "disk",
                   "s:disk", d->name, "u:done", job->offset, "u:total",
                   job->len, NULL);
      if (job->ready)
        ready++;
    }
    if (!stopped && lw.lost_since) {
      g_autofree char *msg = g_strdup_printf (
        "the link to the destination is back after %.1f s: the disks' copy "
        "goes on where it was",
        (double) (g_get_monotonic_time () - lw.lost_since) / 1e6);

      lw.lost_since = 0;
      c->link_resumes++;
      last_change = g_get_monotonic_time ();
      sm_mig_emit (o->event, o->opaque, "message", "s:message", msg, NULL);
    }
    if (ready == n && !stopped)
      return true;
    if (sum != last_sum || stopped) {
      last_sum = sum;
      last_change = g_get_monotonic_time ();
    } else if ((g_get_monotonic_time () - last_change) / 1000 >
               no_progress_ms (c, o, stall_ms)) {
      g_autofree char *what = g_strdup_printf (
        "the disks' copy made no progress for %d s",
        no_progress_ms (c, o, stall_ms) / 1000);

      link_down_error (c, o, what, error);
      return false;
    }
    if (sm_interrupt_check (error))
      return false;
    sm_block_poll_pause (qmp, POLL_MS);
  }
}

/* True when none of COOKIE's mirrors is left but concluded ones. */
bool
sm_mig_mirrors_ended (SmQmp *qmp, const SmMigCookie *c)
{
  g_autoptr(GPtrArray) jobs = sm_block_query_jobs (qmp, NULL);

  if (!jobs)
    return true;                  /* QEMU gone: nothing runs */
  for (guint i = 0; i < c->disks->len; i++) {
    g_autofree char *id = sm_mig_mirror_job_id (((SmMigDisk *) c->disks->pdata[i])->name);
    SmBlockJob *j = sm_block_find_job (jobs, id);

    if (j && g_strcmp0 (j->status, "concluded") != 0)
      return false;
  }
  return true;
}

bool
sm_mig_wait_mirrors_ended (SmQmp *qmp, const SmMigCookie *c, int ms)
{
  /* 10 ms: at the switchover this wait is inside the guest's pause */
  for (int waited = 0; waited < ms; waited += 10) {
    if (sm_mig_mirrors_ended (qmp, c))
      return true;
    sm_block_poll_pause (qmp, 10);
  }
  return sm_mig_mirrors_ended (qmp, c);
}

/* At pre-switchover: every mirror completed without pivoting, its NBD node
 * deleted.  Also fails when a mirror failed during the RAM phase. */
static bool
complete_mirrors (SmQmp *qmp, SmMigCookie *c, GError **error)
{
  for (guint i = 0; i < c->disks->len; i++) {
    const SmMigDisk *d = c->disks->pdata[i];
    g_autofree char *id = NULL;
    g_autoptr(GPtrArray) jobs = NULL;
    SmBlockJob *job;
    GError *err = NULL;

    if (!d->migrate)
      continue;
    id = sm_mig_mirror_job_id (d->name);
    jobs = sm_block_query_jobs (qmp, error);
    if (!jobs)
      return false;
    job = sm_block_find_job (jobs, id);
    if (!job || !job->ready) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "disk %s: its copy to the destination %s during the "
                   "migration of the VM's state", d->name,
                   job ? "fell behind (not ready)" : "ended");
      return false;
    }
    c->disk_bytes += job->len;
    if (!sm_qmp_run (qmp, "block-job-cancel",
                     sm_qmp_args (&err, "s:device", id, NULL), &err)) {
      g_propagate_prefixed_error (error, err, "disk %s: ", d->name);
      return false;
    }
  }
  /* a cancelled READY mirror concludes after its last write: with
   * auto-dismiss off it stays "concluded" until dismissed */
  if (!sm_mig_wait_mirrors_ended (qmp, c, SM_MIG_UNDO_TIMEOUT_MS)) {
    g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                 "the disks' copies did not complete within %d s",
                 SM_MIG_UNDO_TIMEOUT_MS / 1000);
    return false;
  }
  for (guint i = 0; i < c->disks->len; i++) {
    const SmMigDisk *d = c->disks->pdata[i];
    g_autofree char *id = NULL;
    g_autofree char *node = sm_mig_nbd_node (i);
    g_autoptr(GPtrArray) jobs = NULL;
    g_autofree char *why = NULL;
    SmBlockJob *job;

    if (!d->migrate)
      continue;
    id = sm_mig_mirror_job_id (d->name);
    jobs = sm_block_query_jobs (qmp, error);
    if (!jobs)
      return false;
    job = sm_block_find_job (jobs, id);
    if (job && job->io_status && strcmp (job->io_status, "ok") != 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "disk %s: its copy ended with an error (%s)", d->name,
                   job->io_status);
      return false;
    }
    if (job && (why = job_error (qmp, id))) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "disk %s: its copy ended with an error: %s", d->name, why);
      return false;
    }
    if (job)
      sm_qmp_run (qmp, "job-dismiss", sm_qmp_args (NULL, "s:id", id, NULL),
                  NULL);
    sm_mig_del_export_node (qmp, node);
  }
  return true;
}

/* The source's capabilities and parameters for the RAM phase: events,
 * pause-before-switchover (the mirrors complete there), postcopy-ram,
 * multifd; max-bandwidth, max-postcopy-bandwidth (always set: QEMU's
 * default is unlimited), multifd-channels. */
static bool
set_ram_parameters (SmQmp *qmp, const SmMigCookie *c, GError **error)
{
  json_object *caps = sm_mig_capabilities ("events", true,
                                           "pause-before-switchover", true,
                                           "postcopy-ram", c->postcopy,
                                           "multifd", c->parallel > 0, NULL);
  json_object *params = json_object_new_object ();

  if (c->parallel > 0)
    json_object_object_add (params, "multifd-channels",
                            json_object_new_int (c->parallel));
  if (c->bandwidth)
    json_object_object_add (params, "max-bandwidth",
                            json_object_new_int64 ((int64_t) c->bandwidth));
  if (c->postcopy)
    json_object_object_add (params, "max-postcopy-bandwidth",
                            json_object_new_int64 ((int64_t) c->postcopy_bandwidth));
  sm_mig_tls_parameters (c, params);
  if (!sm_qmp_run (qmp, "migrate-set-capabilities",
                   sm_qmp_args (error, "j:capabilities", caps, NULL), error)) {
    json_object_put (params);
    return false;
  }
  if (json_object_object_length (params) == 0) {
    json_object_put (params);
    return true;
  }
  return sm_qmp_run (qmp, "migrate-set-parameters", params, error);
}

SmJournal *
sm_mig_reopen_journal (SmVmState *st, const char *id, GError **error)
{
  g_autofree char *path = sm_mig_journal_path (st, id);

  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "no outgoing migration %s on this VM (its journal %s is "
                 "missing): run migrate-begin first", id, path);
    return NULL;
  }
  return sm_journal_reopen (path, error);
}

bool
sm_migrate_perform (SmQmp *qmp, SmVmState *st, SmMigCookie *c,
                    const SmMigOptions *o, GError **error)
{
  g_autoptr(SmJournal) journal = NULL;
  int stall = o->timeout_ms > 0 ? o->timeout_ms : SM_MIG_STALL_MS;
  static const char *const pre[] = { "pre-switchover", "completed", NULL };
  static const char *const done[] = { "completed", "postcopy-active",
                                      "postcopy-paused", "postcopy-recover",
                                      NULL };
  g_autofree char *status = NULL;
  g_autofree char *migrate_uri = NULL;
  SmMigSwitch sw;
  SmMigWait w;
  g_autoptr(json_object) stop = NULL;
  GError *err = NULL;

  if (!c->nbd_uri || !c->migrate_uri) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "migration cookie: no destination endpoints (pass "
                 "migrate-prepare's cookie to migrate-perform)");
    return false;
  }
  if (!sm_vm_state_lock (st, error))
    return false;
  journal = sm_mig_reopen_journal (st, c->id, error);
  if (!journal)
    return false;

  /* the destination has pulled the lower layers */
  if (c->layers_uri) {
    if (!sm_mig_journal_step (journal, "stop-layer-server", "begin", NULL, error))
      return false;
    sm_migrate_stop_layer_server (qmp, c);
    g_clear_pointer (&c->layers_uri, g_free);
    if (!sm_mig_journal_step (journal, "stop-layer-server", "end", NULL, error))
      return false;
  }
  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "disks", NULL);
  if (!sm_mig_journal_step (journal, "mirror", "begin", NULL, &err) ||
      !start_mirrors (qmp, c, o, &err) ||
      !sm_mig_journal_step (journal, "mirror", "end", NULL, &err) ||
      !wait_mirrors_ready (qmp, c, o, stall, &err))
    goto fail;
  /* the mirrors are READY: their data is there; the switchover comes
   * soon, the destination's finish must be waiting for it by then */
  if (o->dest_ready)
    o->dest_ready (o->ready_opaque, DEST_READY_MS);

  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "ram", NULL);
  if (!set_ram_parameters (qmp, c, &err) ||
      !sm_mig_save_outgoing (st, c, &err) ||
      !sm_mig_journal_step (journal, "migrate", "begin", NULL, &err))
    goto fail;
  sm_qmp_clear_events (qmp);
  sw = (SmMigSwitch) { .c = c, .o = o, .st = st, .journal = journal,
                       .ram_start = g_get_monotonic_time () };
  w = (SmMigWait) { .states = pre, .stall_ms = stall, .watch_fd = -1,
                    .stage = "pre-copy", .fn = o->event, .opaque = o->opaque,
                    .tick = sm_mig_switch_tick, .data = &sw,
                    .ram_bytes = &c->ram_bytes };
  migrate_uri = sm_mig_source_endpoint (o, c->migrate_uri, &err);
  if (!migrate_uri ||
      !sm_qmp_run (qmp, "migrate",
                   sm_qmp_args (&err, "s:uri", migrate_uri, NULL), &err) ||
      !sm_mig_wait (qmp, &w, &status, &err))
    goto fail;
  if (strcmp (status, "pre-switchover") == 0) {
    if (!sm_mig_journal_step (journal, "switchover", "begin", NULL, &err) ||
        !complete_mirrors (qmp, c, &err) ||
        !sm_qmp_run (qmp, "migrate-continue",
                     sm_qmp_args (&err, "s:state", "pre-switchover", NULL),
                     &err))
      goto fail;
    g_clear_pointer (&status, g_free);
    w.states = done;
    w.tick = NULL;
    if (!sm_mig_wait (qmp, &w, &status, &err))
      goto fail;
  }
  stop = sm_qmp_wait_event (qmp, "STOP", NULL, NULL, 0, NULL);
  c->stopped_at_us = MAX (sm_qmp_event_time_us (stop), 0);
  if (g_str_has_prefix (status, "postcopy-")) {
    /* from here on the guest is never resumed on the source */
    c->postcopy_used = true;
    if (!sm_mig_journal_step (journal, "postcopy", "end", NULL, &err))
      goto fail;
    sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "postcopy", NULL);
  } else if (!sm_mig_journal_step (journal, "migrate", "end", NULL, &err)) {
    goto fail;
  }
  g_free (c->phase);
  c->phase = g_strdup ("perform");
  sm_mig_save_outgoing (st, c, NULL);
  return true;

fail:
  sm_mig_journal_step (journal, "perform", "failed", err, NULL);
  g_propagate_error (error, err);
  return false;
}

void
sm_migrate_stop_layer_server (SmQmp *qmp, const SmMigCookie *c)
{
  g_autoptr(json_object) nodes = NULL;

  if (!c->layers_uri)
    return;
  /* every node begin exported, as QEMU lists them: recover's cookie (the
   * journal's header) lists no layers, and nodes left behind made the
   * VM's next migrate-begin fail ("Duplicate nodes") */
  nodes = sm_qmp_execute_type (qmp, "query-named-block-nodes", NULL,
                               json_type_array, NULL);
  for (size_t k = 0; nodes && k < json_object_array_length (nodes); k++) {
    const char *node = sm_json_get_string (json_object_array_get_idx (nodes, k),
                                           "node-name");

    if (node && g_str_has_prefix (node, "sm-layer-"))
      sm_mig_del_export_node (qmp, node);
  }
  sm_qmp_run (qmp, "nbd-server-stop", NULL, NULL);
  sm_mig_tls_del_server (qmp, c);
  if (g_str_has_prefix (c->layers_uri, "unix:"))
    unlink (c->layers_uri + 5);
}

json_object *
sm_mig_capabilities (const char *first, ...)
{
  json_object *a = json_object_new_array ();
  va_list ap;

  va_start (ap, first);
  for (const char *name = first; name; name = va_arg (ap, const char *)) {
    json_object *o = json_object_new_object ();
    json_object_object_add (o, "capability", json_object_new_string (name));
    json_object_object_add (o, "state", json_object_new_boolean (va_arg (ap, int)));
    json_object_array_add (a, o);
  }
  va_end (ap);
  return a;
}
