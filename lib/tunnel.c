/* libsnapmig — the tunnel of migrate --tunnel (lib/tunnel.h).  STUB: the
 * tunnel's work package replaces this file. */
#include "error.h"
#include "tunnel.h"

struct SmTunnel { int unused; };

SmTunnel *
sm_tunnel_open (const char *self_exe, const char *const *dest_argv,
                const char *const *dest_extra, const char *id,
                const char *local_dir, int link_timeout_ms, int timeout_ms,
                GError **error)
{
  (void) self_exe; (void) dest_argv; (void) dest_extra; (void) id;
  (void) local_dir; (void) link_timeout_ms; (void) timeout_ms;
  g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED, "no tunnel yet");
  return NULL;
}

const char *sm_tunnel_mode (const SmTunnel *t) { (void) t; return "relay"; }
const char *sm_tunnel_remote_dir (const SmTunnel *t) { (void) t; return "/"; }

char *
sm_tunnel_forward (SmTunnel *t, const char *remote_uri, GError **error)
{
  (void) t;
  (void) remote_uri;
  g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED, "no tunnel yet");
  return NULL;
}

char *
sm_tunnel_reverse (SmTunnel *t, const char *name, const char *local_uri,
                   GError **error)
{
  (void) t; (void) name; (void) local_uri;
  g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED, "no tunnel yet");
  return NULL;
}

bool
sm_tunnel_state (SmTunnel *t, SmTunnelState *state, GError **error)
{
  (void) t; (void) state;
  g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED, "no tunnel yet");
  return false;
}

void sm_tunnel_close (SmTunnel *t) { g_free (t); }

char *
sm_tunnel_dest_dir (const char *state_dir, const char *id)
{
  g_autofree char *name = g_strconcat (id, "-tunnel", NULL);

  return g_build_filename (state_dir, "run", name, NULL);
}

void sm_tunnel_dest_dir_remove (const char *state_dir, const char *id)
{
  (void) state_dir; (void) id;
}
