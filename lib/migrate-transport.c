/* libsnapmig — how a migration's streams travel (issue 12): the cookie's
 * mode checked on both sides, the source's view of the destination's
 * endpoints through a tunnel (lib/tunnel.h), the link timeout. */
#include <string.h>

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
