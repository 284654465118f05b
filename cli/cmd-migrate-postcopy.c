/* snapmig migrate-start-postcopy | migrate-recover — a running migration
 * switched to post-copy, and a post-copy whose link failed recovered
 * (source side, or --incoming: the destination's) (lib/migrate.h).
 * Options and printing only.
 */
#include <stdio.h>

#include "cmd-migrate.h"
#include "migrate-json.h"

static gboolean opt_incoming;
static gboolean opt_hold;

static const GOptionEntry start_postcopy_entries[] = {
  SOURCE_ENTRIES,
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static const GOptionEntry recover_entries[] = {
  SOURCE_ENTRIES,
  WATCH_ENTRIES,
  DEST_CMD_ENTRIES,
  { "incoming", 0, 0, G_OPTION_ARG_NONE, &opt_incoming,
    "Destination side: read the migration's cookie on stdin, listen again "
    "for the paused post-copy, print the cookie with the new endpoint", NULL },
  { "hold", 0, 0, G_OPTION_ARG_NONE, &opt_hold,
    "With --incoming: stay, holding an out-of-band connection to the "
    "destination QEMU (which answers when a vCPU waiting for a page blocks "
    "every other command); print \"ready\", then answer each line "
    "\"recover\" on stdin with \"uri URI\" or \"error CODE MESSAGE\" "
    "(migrate starts it during post-copy)", NULL },
  DEST_ENTRIES,
  PORT_ENTRIES (PORT_HELP, "Ignored (the migration's endpoint says unix or "
                "TCP)"),
  TRANSPORT_ENTRIES,
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

/* ---- post-copy ------------------------------------------------------------ */

int
sm_cmd_migrate_start_postcopy (int argc, char **argv)
{
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *dir = NULL;
  const char *cmd = "migrate-start-postcopy";
  int code;

  if (!sm_cli_parse (cmd, NULL,
                     "Switch the running migration of the VM (migrate "
                     "--postcopy) to post-copy: the guest then runs on the "
                     "destination and the rest of its RAM follows on "
                     "demand.  The request goes to the snapmig that runs "
                     "the migration, through the state directory.",
                     start_postcopy_entries, &argc, &argv, &code))
    return code;
  if (!mig_need_qmp (cmd) || !sm_cli_timeout_ok (cmd, mig_opt_timeout))
    return SM_EXIT_USAGE;
  /* No QMP connection of our own: the running migrate holds the monitor
   * (the library asks QEMU itself when nobody does). */
  dir = mig_state_dir ();
  st = sm_vm_state_open (dir, mig_opt_qmp, &err);
  if (!st ||
      !sm_migrate_start_postcopy (st, mig_opt_qmp,
                                  sm_cli_timeout_s (mig_opt_timeout) * 1000,
                                  &err)) {
    return sm_cli_fail (cmd, err, mig_opt_qmp);
  }
  if (sm_cli_json) {
    g_autoptr(json_object) doc = sm_mig_start_postcopy_json (
      sm_vm_state_canonical_address (st));

    return sm_cli_print_document (doc) ? SM_EXIT_OK : SM_EXIT_FAILURE;
  }
  printf ("post-copy requested: the migration of VM at %s switches to "
          "post-copy\n", sm_vm_state_canonical_address (st));
  return SM_EXIT_OK;
}

/* migrate-recover --incoming: the destination listens again. */
static int
recover_incoming (const char *cmd)
{
  g_autoptr(SmMigCookie) c = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *state = NULL;
  Printer pr = { .json = true, .json_out = stderr };
  SmMigDestOptions o;
  int code;

  if (mig_opt_qmp || mig_opt_dest_cmd || mig_opt_dest_state_dir ||
      mig_opt_stall_timeout != UNSET || mig_opt_recover_timeout != UNSET)
    return sm_cli_usage ("%s: --incoming takes none of --qmp, --dest-cmd, "
                         "--dest-state-dir, --stall-timeout and "
                         "--recover-timeout (they are the source's)", cmd);
  /* Its stdout is the cookie: events go to stderr, as the phases'. */
  sm_cli_set_output (SM_CLI_OUTPUT_EVENTS_STDERR);
  c = mig_dest_start (cmd, &o, &pr, &state, &code);
  if (!c)
    return code;
  if (opt_hold) {
    if (sm_migrate_recover_agent (c, &o, STDIN_FILENO, stdout, &err))
      return SM_EXIT_OK;
    return sm_cli_fail (cmd, err, mig_opt_qmp);
  }
  sm_migrate_recover_listen (c, &o, &err);
  return mig_dest_done (cmd, "recover", c, err);
}

int
sm_cmd_migrate_recover (int argc, char **argv)
{
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(SmMigCookie) c = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(SmProgress) progress = NULL;
  g_autoptr(GPtrArray) extra = g_ptr_array_new_with_free_func (g_free);
  g_auto(GStrv) dest_argv = NULL;
  const char *cmd = "migrate-recover";
  Printer pr = { 0 };
  SmMigOptions o;
  gint64 start = g_get_monotonic_time ();
  int code;

  if (!sm_cli_parse (cmd, NULL,
                     "Recover a post-copy migration whose link failed, after "
                     "its migrate was killed or gave up: the source and the "
                     "destination (through --dest-cmd) are paused if they "
                     "are not, the destination listens again, the source "
                     "resumes the stream; then the migration is awaited, "
                     "finished there and confirmed here.  With --incoming: "
                     "the destination's part (cookie on stdin, cookie with "
                     "the new endpoint on stdout).",
                     recover_entries, &argc, &argv, &code))
    return code;
  if (opt_hold && !opt_incoming)
    return sm_cli_usage ("%s: --hold goes with --incoming", cmd);
  if (opt_incoming)
    return recover_incoming (cmd);
  progress = sm_progress_new (false);
  pr = mig_whole_printer (progress);
  if (!mig_need_qmp (cmd) || !mig_base_options (cmd, &o, &pr) ||
      !mig_dest_command (cmd, &dest_argv, extra))
    return SM_EXIT_USAGE;
  if (!mig_whole_open (cmd, "recover", &qmp, &st, &code))
    return code;
  c = sm_migrate_recover_run (qmp, st, &o, (const char *const *) dest_argv,
                              (const char *const *) extra->pdata, &err);
  if (!c) {
    return mig_print_failure (cmd, err);
  }
  mig_print_result (c, mig_elapsed_s (start));
  return SM_EXIT_OK;
}
