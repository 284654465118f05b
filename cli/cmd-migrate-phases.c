/* snapmig migrate-begin | migrate-prepare | migrate-perform |
 * migrate-finish | migrate-confirm — a migration's phases one by one, each
 * on its host, the cookie passed on stdin and stdout (lib/migrate.h).
 * Options and printing only.
 */
#include <stdio.h>

#include "cmd-migrate.h"

static gboolean opt_cancel;
static gboolean opt_failed;
static gboolean opt_dest_never_ran;

static const GOptionEntry begin_entries[] = {
  SOURCE_ENTRIES,
  PLAN_ENTRIES,
  { "dry-run", 0, 0, G_OPTION_ARG_NONE, &mig_opt_dry_run,
    "Print the plan; change nothing", NULL },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static const GOptionEntry prepare_entries[] = {
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &mig_opt_state_dir,
    "snapmig's state directory on this host", "DIR" },
  SM_CLI_TIMEOUT_ENTRY (mig_opt_timeout, SM_CLI_TIMEOUT_HELP),
  DEST_ENTRIES,
  PORT_ENTRIES (PORT_HELP, "Unix sockets in the run directory instead of TCP"),
  TRANSPORT_ENTRIES,
  { "dry-run", 0, 0, G_OPTION_ARG_NONE, &mig_opt_dry_run,
    "Print the plan; change nothing", NULL },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static const GOptionEntry perform_entries[] = {
  SOURCE_ENTRIES,
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static const GOptionEntry finish_entries[] = {
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &mig_opt_state_dir,
    "snapmig's state directory on this host", "DIR" },
  SM_CLI_TIMEOUT_ENTRY (mig_opt_timeout, SM_CLI_TIMEOUT_HELP),
  { "cancel", 0, 0, G_OPTION_ARG_NONE, &opt_cancel,
    "Stop the destination QEMU and remove what prepare made", NULL },
  { "watch-stdin", 0, 0, G_OPTION_ARG_NONE, &mig_opt_watch_stdin,
    "Fail (and clean up) when standard input closes before the migration "
    "completed: migrate keeps it open while the source works", NULL },
  /* accepted so that migrate can pass every phase the same options */
  DEST_ENTRIES,
  PORT_ENTRIES ("Ignored (prepare's option)", "Ignored (prepare's option)"),
  TRANSPORT_ENTRIES,
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static const GOptionEntry confirm_entries[] = {
  SOURCE_ENTRIES,
  { "failed", 0, 0, G_OPTION_ARG_NONE, &opt_failed,
    "The migration failed: roll the source back and resume it", NULL },
  { "dest-never-ran", 0, 0, G_OPTION_ARG_NONE, &opt_dest_never_ran,
    "With --failed: the destination never ran the guest (its 'recover "
    "--incoming' or 'migrate-finish --cancel' rolled back), so the source "
    "may resume even after a completed migration", NULL },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

/* ---- the phases -------------------------------------------------------- */

int
sm_cmd_migrate_begin (int argc, char **argv)
{
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(SmMigCookie) c = NULL;
  g_autoptr(GError) err = NULL;
  Printer pr = { .json = true, .json_out = stderr };
  SmMigOptions o;
  int code;

  if (!sm_cli_parse ("migrate-begin", NULL,
                     "Source, first phase: plan the migration of the VM, "
                     "take the snapshot that gives each disk a new top and "
                     "export the lower layers to the destination; print the "
                     "migration cookie for migrate-prepare.",
                     begin_entries, &argc, &argv, &code))
    return code;
  if (!mig_source_options ("migrate-begin", &o, &pr))
    return SM_EXIT_USAGE;
  if (!mig_open_source ("migrate-begin", &qmp, &st, &err))
    return sm_cli_fail ("migrate-begin", err, mig_opt_qmp);
  o.event = NULL;
  c = sm_migrate_begin (qmp, st, &o, mig_opt_dry_run, &err);
  g_strfreev (o.disks);
  if (!c) {
    return sm_cli_fail ("migrate-begin", err, mig_opt_qmp);
  }
  mig_write_cookie (c);
  return sm_cli_result (NULL);
}

int
sm_cmd_migrate_prepare (int argc, char **argv)
{
  g_autoptr(SmMigCookie) c = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *state = NULL;
  Printer pr = { .json = true, .json_out = stderr };
  SmMigDestOptions o;
  int code;

  if (!sm_cli_parse ("migrate-prepare", NULL,
                     "Destination: read begin's cookie on stdin, pre-create "
                     "the disks in --dest-domain, copy the lower layers, "
                     "start the destination QEMU waiting for the migration "
                     "and its NBD server; print the cookie for "
                     "migrate-perform.  On failure nothing is left.",
                     prepare_entries, &argc, &argv, &code))
    return code;
  /* A usage error before the cookie is read, not a failed prepare. */
  if (!mig_opt_dest_domain)
    return sm_cli_usage ("migrate-prepare: --dest-domain DIR is required (see "
                         "'snapmig migrate-prepare --help')");
  c = mig_dest_start ("migrate-prepare", &o, &pr, &state, &code);
  if (!c)
    return code;
  sm_migrate_prepare (c, &o, mig_opt_dry_run, &err);
  return mig_dest_done ("migrate-prepare", "prepare", c, err);
}

int
sm_cmd_migrate_perform (int argc, char **argv)
{
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(SmMigCookie) c = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(SmProgress) progress = NULL;
  Printer pr = { 0 };
  SmMigOptions o;
  int code;

  if (!sm_cli_parse ("migrate-perform", NULL,
                     "Source: read prepare's cookie on stdin, copy every "
                     "disk's top into the destination's exports, migrate the "
                     "VM's state; print the cookie for migrate-finish.",
                     perform_entries, &argc, &argv, &code))
    return code;
  progress = sm_progress_new (false);
  pr = (Printer) { .progress = sm_cli_json ? NULL : progress,
                   .json = sm_cli_json, .json_out = stderr,
                   .text_out = stderr };
  if (!mig_source_options ("migrate-perform", &o, &pr))
    return SM_EXIT_USAGE;
  o.converge_ms = mig_opt_timeout * 1000;
  if (!mig_open_source ("migrate-perform", &qmp, &st, &err))
    return sm_cli_fail ("migrate-perform", err, mig_opt_qmp);
  c = mig_read_cookie ("migrate-perform", &code);
  if (!c)
    return code;
  if (!sm_migrate_perform (qmp, st, c, &o, &err)) {
    c->failed = true;
    c->error_phase = g_strdup ("perform");
    c->error_message = g_strdup (err->message);
    mig_write_cookie (c);
    return sm_cli_fail ("migrate-perform", err, mig_opt_qmp);
  }
  mig_write_cookie (c);
  return sm_cli_result (NULL);
}

int
sm_cmd_migrate_finish (int argc, char **argv)
{
  g_autoptr(SmMigCookie) c = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *state = NULL;
  Printer pr = { .json = true, .json_out = stderr };
  SmMigDestOptions o;
  int code;

  if (!sm_cli_parse ("migrate-finish", NULL,
                     "Destination: read perform's cookie on stdin, wait for "
                     "the migration to complete, stop the NBD server and "
                     "resume the guest; print the cookie for "
                     "migrate-confirm.  With --cancel: stop the destination "
                     "QEMU and remove every file prepare made.",
                     finish_entries, &argc, &argv, &code))
    return code;
  c = mig_dest_start ("migrate-finish", &o, &pr, &state, &code);
  if (!c)
    return code;
  /* with --json, finish says when it watches its QEMU (a phase event, on
   * stderr): migrate waits for that before the switchover */
  if (opt_cancel) {
    o.event = NULL;
    sm_migrate_cancel_incoming (c, &o, &err);
  } else
    sm_migrate_finish (c, &o, &err);
  return mig_dest_done ("migrate-finish", opt_cancel ? "cancel" : "finish",
                        c, err);
}

int
sm_cmd_migrate_confirm (int argc, char **argv)
{
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(SmMigCookie) c = NULL;
  g_autoptr(GError) err = NULL;
  Printer pr = { 0 };
  SmMigOptions o;
  int code;

  if (!sm_cli_parse ("migrate-confirm", NULL,
                     "Source, last phase: read finish's cookie on stdin.  "
                     "The source QEMU quits and the migration's snapshot is "
                     "folded back; with --failed the source is rolled back "
                     "and resumed instead (refused once the destination may "
                     "have run the guest).",
                     confirm_entries, &argc, &argv, &code))
    return code;
  if (!mig_source_options ("migrate-confirm", &o, &pr))
    return SM_EXIT_USAGE;
  if (!mig_open_source ("migrate-confirm", &qmp, &st, &err))
    return sm_cli_fail ("migrate-confirm", err, mig_opt_qmp);
  g_strfreev (o.disks);
  c = mig_read_cookie ("migrate-confirm", &code);
  if (!c)
    return code;
  if (opt_dest_never_ran) {
    if (!opt_failed)
      return sm_cli_usage ("migrate-confirm: --dest-never-ran goes with "
                           "--failed");
    c->failed = true;
    c->dest_ran = false;
    g_free (c->error_phase);
    c->error_phase = g_strdup ("finish");
  }
  if (!sm_migrate_confirm (qmp, st, c, !opt_failed && !c->failed, &err)) {
    return sm_cli_fail ("migrate-confirm", err, mig_opt_qmp);
  }
  if (sm_cli_json) {
    json_object *f = json_object_new_object ();

    json_object_object_add (f, "rolled-back",
                            json_object_new_boolean (opt_failed || c->failed));
    return sm_cli_result (f);
  }
  printf ("%s\n", opt_failed || c->failed ?
          "migration rolled back: the guest runs on the source" :
          "migration confirmed: the source QEMU has quit");
  return SM_EXIT_OK;
}
