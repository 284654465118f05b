/* tunnel-client — TEST TOOL, not installed: lib/tunnel.h's client side
 * (what migrate calls) driven by lines on stdin, for test-tunnel.sh.
 *
 *   tunnel-client SNAPMIG ID LOCAL-DIR LINK-TIMEOUT-MS TIMEOUT-MS
 *                 [--extra=OPT]... -- DEST-COMMAND...
 *
 * Opens the tunnel (sm_tunnel_open) and prints "open MODE REMOTE-DIR", or
 * "error MESSAGE" and exits 1.  Then each line on stdin:
 *   forward URI         -> "ok URI" (sm_tunnel_forward)
 *   reverse NAME URI    -> "ok URI" (sm_tunnel_reverse)
 *   state               -> "state up|down RESTARTS BYTES PID"
 * or "error MESSAGE".  At end of input: sm_tunnel_close, "closed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>

#include "error.h"
#include "tunnel.h"

int
main (int argc, char **argv)
{
  g_autoptr(GPtrArray) extra = g_ptr_array_new ();
  g_autoptr(GError) err = NULL;
  SmTunnel *t;
  char line[4096];
  int i;

  if (argc < 8) {
    fprintf (stderr, "usage: tunnel-client SNAPMIG ID LOCAL-DIR LINK-MS "
             "TIMEOUT-MS [--extra=OPT]... -- DEST...\n");
    return 2;
  }
  for (i = 6; i < argc && strcmp (argv[i], "--") != 0; i++)
    if (g_str_has_prefix (argv[i], "--extra="))
      g_ptr_array_add (extra, argv[i] + 8);
  g_ptr_array_add (extra, NULL);
  if (i >= argc - 1)
    return 2;
  t = sm_tunnel_open (argv[1], (const char *const *) argv + i + 1,
                      (const char *const *) extra->pdata, argv[2], argv[3],
                      atoi (argv[4]), atoi (argv[5]), &err);
  if (!t) {
    printf ("error %s\n", err->message);
    return 1;
  }
  printf ("open %s %s\n", sm_tunnel_mode (t), sm_tunnel_remote_dir (t));
  fflush (stdout);
  while (fgets (line, sizeof line, stdin)) {
    g_autofree char *uri = NULL;
    g_auto(GStrv) w = NULL;
    SmTunnelState s;

    g_strchomp (line);
    w = g_strsplit (line, " ", 3);
    g_clear_error (&err);
    if (w[0] && strcmp (w[0], "forward") == 0 && w[1])
      uri = sm_tunnel_forward (t, w[1], &err);
    else if (w[0] && strcmp (w[0], "reverse") == 0 && w[1] && w[2])
      uri = sm_tunnel_reverse (t, w[1], w[2], &err);
    else if (w[0] && strcmp (w[0], "state") == 0) {
      if (sm_tunnel_state (t, &s, &err))
        printf ("state %s %d %" G_GINT64_FORMAT " %d\n",
                s.up ? "up" : "down", s.restarts, (gint64) s.bytes, s.pid);
    } else
      g_set_error (&err, SM_ERROR, SM_ERROR_INVALID,
                   "unknown request");
    if (uri)
      printf ("ok %s\n", uri);
    else if (err)
      printf ("error %s\n", err->message);
    fflush (stdout);
  }
  sm_tunnel_close (t);
  printf ("closed\n");
  return 0;
}
