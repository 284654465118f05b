/* snapmig migrate — a running VM with its local disks to another host,
 * every phase in one command (lib/migrate.h).  Options and printing only;
 * the phases one by one are cmd-migrate-phases.c, the shared part
 * cmd-migrate-common.c.
 */
#include <stdio.h>

#include "cmd-migrate.h"
#include "report-json.h"

static const GOptionEntry migrate_entries[] = {
  SOURCE_ENTRIES,
  LIBVIRT_ENTRIES,
  PLAN_ENTRIES,
  WATCH_ENTRIES,
  DEST_ENTRIES,
  DEST_CMD_ENTRIES,
  { "dry-run", 0, 0, G_OPTION_ARG_NONE, &mig_opt_dry_run,
    "Print both hosts' plans (migration cookies); change nothing", NULL },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

int
sm_cmd_migrate (int argc, char **argv)
{
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(SmMigCookie) c = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(SmProgress) progress = NULL;
  g_autoptr(GPtrArray) extra = g_ptr_array_new_with_free_func (g_free);
  g_auto(GStrv) dest_argv = NULL;
  g_autofree char *plan = NULL;
  Printer pr = { 0 };
  SmMigOptions o;
  gint64 start = g_get_monotonic_time ();
  int code;

  if (!sm_cli_parse ("migrate", NULL,
                     "Migrate the running VM with its local disks to another "
                     "host: begin here, prepare there (disks pre-created in "
                     "--dest-domain, the destination QEMU started), perform "
                     "here (disks, then RAM), finish there, confirm here.  "
                     "Any failure leaves the VM running here on its own "
                     "disks and nothing on the destination.",
                     migrate_entries, &argc, &argv, &code))
    return code;
  progress = sm_progress_new (false);
  pr = mig_whole_printer (progress);
  if (!mig_source_options ("migrate", &o, &pr))
    return SM_EXIT_USAGE;
  o.converge_ms = mig_opt_timeout * 1000;
  if (mig_opt_connect || mig_opt_domain || mig_opt_dest_connect) {
    code = mig_libvirt_run (&o);
    g_strfreev (o.disks);
    return code;
  }
  if (!mig_opt_dest_domain) {
    (void) sm_cli_usage ("migrate: --dest-domain DIR is required");
    g_strfreev (o.disks);
    return SM_EXIT_USAGE;
  }
  if (!mig_dest_command ("migrate", &dest_argv, extra)) {
    g_strfreev (o.disks);
    return SM_EXIT_USAGE;
  }
  if (!mig_whole_open ("migrate", "begin", &qmp, &st, &code)) {
    g_strfreev (o.disks);
    return code;
  }
  c = sm_migrate_run (qmp, st, &o, (const char *const *) dest_argv,
                      (const char *const *) extra->pdata, mig_opt_dry_run,
                      &plan, &err);
  g_strfreev (o.disks);
  if (!c) {
    return mig_print_failure ("migrate", err);
  }
  if (mig_opt_dry_run) {
    g_autofree char *src = sm_mig_cookie_format (c);

    if (sm_cli_json) {
      /* JSON lines as ever: both cookies in one plan event, then the
       * result. */
      g_autoptr(json_object) ev = sm_report_event_new ("plan");

      json_object_object_add (ev, "source-cookie",
                              json_object_new_string (src));
      json_object_object_add (ev, "dest-cookie",
                              json_object_new_string (plan));
      sm_cli_print_event (ev);
      return sm_cli_result (NULL);
    }
    printf ("# source (%s): snapshot of each disk's top, then the lower "
            "layers exported\n%s", c->hostname, src);
    printf ("# destination: files to create and QEMU to start\n%s", plan);
    return SM_EXIT_OK;
  }
  mig_print_result (c, mig_elapsed_s (start));
  return SM_EXIT_OK;
}
