/* libsnapmig — how a migration's streams travel (issue 12): the cookie's
 * mode checked on both sides, the source's view of the destination's
 * endpoints through a tunnel (lib/tunnel.h), the link timeout. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "helper.h"
#include "migrate-private.h"
#include "tunnel.h"

const char *
sm_mig_transport_name (bool tunnel, bool tls, bool unix_sockets)
{
  return tunnel ? "tunnel" : tls ? "tls" : unix_sockets ? "unix" : "tcp";
}

/* The option that selects MODE, for messages. */
static const char *
mode_option (const char *mode)
{
  if (strcmp (mode, "tunnel") == 0)
    return "--tunnel";
  if (strcmp (mode, "tls") == 0)
    return "--tls --tls-creds DIR";
  if (strcmp (mode, "unix") == 0)
    return "--unix";
  return "none of --tunnel, --tls, --unix";
}

bool
sm_mig_check_transport (const SmMigCookie *c, bool tunnel, bool tls,
                        bool unix_sockets, GError **error)
{
  const char *mine = sm_mig_transport_name (tunnel, tls, unix_sockets);
  const char *theirs = c->transport ? c->transport : "tcp";

  if (strcmp (mine, theirs) == 0)
    return true;
  g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
               "migration %s: the source's streams are '%s' (cookie "
               "transport) but this destination was asked for '%s': give "
               "both sides the same mode (here: %s)", c->id ? c->id : "?",
               theirs, mine, mode_option (theirs));
  return false;
}

char *
sm_mig_source_endpoint (const SmMigOptions *o, const char *uri,
                        GError **error)
{
  if (!o->tunnel_handle)
    return g_strdup (uri);
  return sm_tunnel_forward (o->tunnel_handle, uri, error);
}

int
sm_mig_link_timeout_ms (int link_timeout_ms)
{
  return link_timeout_ms > 0 ? link_timeout_ms : SM_MIG_LINK_TIMEOUT_MS;
}

#define TUNNEL_DIR_MAX 70

char *
sm_mig_socket_dir (SmVmState *st)
{
  const char *jdir = sm_vm_state_journal_dir (st);
  const char *run = g_getenv ("XDG_RUNTIME_DIR");

  if (strlen (jdir) + strlen ("/XXXXXXXX-tunnel99") <= TUNNEL_DIR_MAX)
    return g_strdup (jdir);
  if (run && *run == '/' && strlen (run) + 40 <= TUNNEL_DIR_MAX)
    return g_strdup (run);
  return g_strdup ("/tmp");
}

/* XXXXXXXX-tunnel beside the journal, snapmig-XXXXXXXX-tunnel elsewhere. */
static char *
tunnel_name (SmVmState *st, const char *id)
{
  g_autofree char *base = sm_mig_socket_dir (st);
  const char *tail = id + MAX (strlen (id), 8) - 8;

  if (strcmp (base, sm_vm_state_journal_dir (st)) == 0)
    return g_strconcat (tail, "-tunnel", NULL);
  return g_strconcat ("snapmig-", tail, "-tunnel", NULL);
}

SmTunnel *
sm_mig_tunnel_open (SmVmState *st, const SmMigCookie *c, const SmMigOptions *o,
             const char *const *dest_argv, const char *const *dest_extra,
             GError **error)
{
  /* the tunnel is `snapmig tunnel`: the helper binary (helper.h) */
  g_autofree char *self = sm_helper_path ();
  g_autofree char *base = sm_mig_socket_dir (st);
  g_autofree char *name = tunnel_name (st, c->id);
  g_autofree char *dir = g_build_filename (base, name, NULL);
  g_autoptr(SmTunnel) t = NULL;
  g_autofree char *remote = NULL;

  /* a tunnel of this migration's earlier snapmig (killed: migrate-recover
   * runs now, under the VM's lock) ended with it; its directory, if any,
   * is left alone and a new one taken */
  for (int k = 2; g_file_test (dir, G_FILE_TEST_EXISTS) && k < 100; k++) {
    g_free (dir);
    dir = g_strdup_printf ("%s/%s%d", base, name, k);
  }
  t = sm_tunnel_open (self ? self : "snapmig", dest_argv, dest_extra, c->id,
                      dir, sm_mig_link_timeout_ms (o->link_timeout_ms),
                      o->timeout_ms > 0 ? o->timeout_ms : 60000, error);
  if (!t)
    return NULL;
  if (c->layers_uri) {
    remote = sm_tunnel_reverse (t, "layers", c->layers_uri, error);
    if (!remote)
      return NULL;
  }
  {
    SmTunnelState ts = { 0 };
    g_autofree char *msg = NULL;

    sm_tunnel_state (t, &ts, NULL);
    msg = g_strdup_printf ("tunnel (%s) to the destination up: every stream "
                           "goes through it (its directory %s, transport "
                           "PID %d)", sm_tunnel_mode (t), dir, ts.pid);
    sm_mig_emit (o->event, o->opaque, "message", "s:message", msg,
                 "s:tunnel-mode", sm_tunnel_mode (t), "s:tunnel-dir", dir,
                 "u:transport-pid", (uint64_t) MAX (ts.pid, 0), NULL);
  }
  return g_steal_pointer (&t);
}

void
sm_mig_tunnel_leftovers (SmVmState *st, const char *id)
{
  g_autofree char *jdir = sm_mig_socket_dir (st);
  g_autofree char *prefix = tunnel_name (st, id);
  g_autoptr(GDir) d = g_dir_open (jdir, 0, NULL);
  const char *name;

  while (d && (name = g_dir_read_name (d))) {
    g_autofree char *dir = NULL;
    g_autofree char *pidfile = NULL;
    g_autofree char *text = NULL;
    long pid = 0;

    if (!g_str_has_prefix (name, prefix))
      continue;
    dir = g_build_filename (jdir, name, NULL);
    if (!g_file_test (dir, G_FILE_TEST_IS_DIR) ||
        g_file_test (dir, G_FILE_TEST_IS_SYMLINK))
      continue;
    pidfile = g_build_filename (dir, "transport.pid", NULL);
    if (g_file_get_contents (pidfile, &text, NULL, NULL))
      pid = strtol (text, NULL, 10);
    if (pid > 0 && kill ((pid_t) pid, 0) == 0)
      continue;                   /* its transport still runs */
    sm_tunnel_remove_dir (dir);
  }
}
