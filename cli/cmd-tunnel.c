/* snapmig tunnel | relay — the two internal helpers of `migrate --tunnel`
 * (lib/tunnel.h): `tunnel` is the source's tunnel process that migrate
 * starts (hidden from `snapmig help`), `relay` the destination's end that
 * the tunnel starts through --dest-cmd.  Options and printing only.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd-migrate.h"
#include "error.h"
#include "tunnel.h"

/* The tunnel's exit status when its transport stayed down longer than
 * the link timeout (lib/tunnel.h): the table's "disconnected"
 * (lib/error.h), as every snapmig command that lost its peer. */
#define TUNNEL_EXIT_LINK_DOWN SM_EXIT_STATUS_DISCONNECTED

static char *opt_id;
static char *opt_local_dir;
static int opt_link_timeout_ms = 30000;
static char **opt_dest_opts;
static gboolean opt_hold;

static const GOptionEntry tunnel_entries[] = {
  { "id", 0, 0, G_OPTION_ARG_STRING, &opt_id,
    "The migration's id (names the destination's directory)", "ID" },
  { "local-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_local_dir,
    "The tunnel's private directory on this host (removed at the end)",
    "DIR" },
  { "link-timeout-ms", 0, 0, G_OPTION_ARG_INT, &opt_link_timeout_ms,
    "Give up (exit 6, disconnected) when the transport stays down this "
    "long", "MS" },
  { "dest-opt", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opt_dest_opts,
    "An option for the destination's relay (repeated)", "OPT" },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static const GOptionEntry relay_entries[] = {
  { "id", 0, 0, G_OPTION_ARG_STRING, &opt_id,
    "The migration's id: the tunnel's directory is STATE/run/ID-tunnel",
    "ID" },
  { "hold", 0, 0, G_OPTION_ARG_NONE, &opt_hold,
    "Only make the directory, then wait for end of file on standard input "
    "(ssh mode: ssh carries the streams)", NULL },
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &mig_opt_state_dir,
    "snapmig's state directory on this host", "DIR" },
  /* accepted so that migrate can pass every destination command the same
   * options */
  SM_CLI_TIMEOUT_ENTRY (mig_opt_timeout, "Ignored (the phases' option)"),
  DEST_ENTRIES,
  PORT_ENTRIES ("Ignored (prepare's option)", "Ignored (prepare's option)"),
  TRANSPORT_ENTRIES,
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

int
sm_cmd_tunnel (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  SmTunnelServeOptions o = { 0 };
  char **dest_argv = NULL;
  int code, i;

  /* DEST_ARGV follows "--", parsed by nobody */
  for (i = 1; i < argc; i++)
    if (strcmp (argv[i], "--") == 0) {
      dest_argv = argv + i + 1;
      argv[i] = NULL;
      argc = i;
      break;
    }
  if (!sm_cli_parse ("tunnel", "-- DEST-COMMAND...",
                     "Internal helper of 'migrate --tunnel' (migrate starts "
                     "it): carries the migration's streams through the "
                     "destination command's connection; control requests on "
                     "standard input, answers on standard output.",
                     tunnel_entries, &argc, &argv, &code))
    return code;
  if (!opt_id || !opt_local_dir || !dest_argv || !dest_argv[0]) {
    sm_cli_error ("tunnel: --id, --local-dir and '-- DEST-COMMAND' are "
                  "needed (an internal helper of 'migrate --tunnel')");
    return SM_EXIT_USAGE;
  }
  if (argc > 1) {
    sm_cli_error ("tunnel: unexpected argument '%s'", argv[1]);
    return SM_EXIT_USAGE;
  }
  signal (SIGPIPE, SIG_IGN);
  o.dest_argv = (const char *const *) dest_argv;
  o.dest_extra = (const char *const *) opt_dest_opts;
  o.id = opt_id;
  o.local_dir = opt_local_dir;
  o.link_timeout_ms = opt_link_timeout_ms > 0 ? opt_link_timeout_ms : 0;
  if (!sm_tunnel_serve (&o, STDIN_FILENO, STDOUT_FILENO, &err)) {
    fprintf (stderr, "error %s\n", err->message);
    return TUNNEL_EXIT_LINK_DOWN;
  }
  return SM_EXIT_OK;
}

int
sm_cmd_relay (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *state = NULL;
  int code;

  if (!sm_cli_parse ("relay", NULL,
                     "Internal helper of 'migrate --tunnel' on the "
                     "destination (the tunnel starts it through --dest-cmd): "
                     "makes the tunnel's directory STATE/run/ID-tunnel, "
                     "prints \"snapmig-relay 1 DIR\", then carries the "
                     "streams on standard input and output (or, with "
                     "--hold, waits for end of file).",
                     relay_entries, &argc, &argv, &code))
    return code;
  if (!opt_id) {
    sm_cli_error ("relay: --id is needed (an internal helper of 'migrate "
                  "--tunnel')");
    return SM_EXIT_USAGE;
  }
  if (argc > 1) {
    sm_cli_error ("relay: unexpected argument '%s'", argv[1]);
    return SM_EXIT_USAGE;
  }
  /* Ignored, but a bad value is still a usage error as on every command. */
  if (!sm_cli_timeout_ok ("relay", mig_opt_timeout))
    return SM_EXIT_USAGE;
  signal (SIGPIPE, SIG_IGN);
  state = mig_state_dir ();
  if (!sm_relay_dest (state, opt_id, opt_hold, STDIN_FILENO, STDOUT_FILENO,
                      &err)) {
    sm_cli_gerror ("relay", err);
    return SM_EXIT_FAILURE;
  }
  return SM_EXIT_OK;
}
