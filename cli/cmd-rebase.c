/* snapmig rebase — merge the layers above a base into a running disk's
 * active layer (block-stream), keeping the base's name relative.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "progress.h"
#include "qmp.h"
#include "rebase.h"
#include "report-json.h"
#include "state.h"

static char *opt_qmp;
static char *opt_base;
static char *opt_bandwidth;
static int opt_timeout;
static gboolean opt_dry_run;
static char *opt_state_dir;

static const GOptionEntry entries[] = {
  { "qmp", 0, 0, G_OPTION_ARG_FILENAME, &opt_qmp,
    "The VM's QMP socket path or HOST:PORT (required)", "SOCKET" },
  SM_CLI_LIBVIRT_ENTRIES,
  { "base", 0, 0, G_OPTION_ARG_FILENAME, &opt_base,
    "Keep IMAGE (a path, or a node name) as the backing file and merge only "
    "the layers above it; without --base every layer is merged and the disk "
    "becomes standalone", "IMAGE" },
  { "bandwidth", 0, 0, G_OPTION_ARG_STRING, &opt_bandwidth,
    "Limit the copy to RATE bytes per second (suffixes K, M, G, T: powers of "
    "1024)", "RATE" },
  SM_CLI_TIMEOUT_ENTRY (opt_timeout,
    "Give up (and cancel the job, leaving the chain unchanged) after "
    "SECONDS, or when QEMU does not answer within SECONDS (default: no "
    "limit for the job, 30 for each answer)"),
  { "dry-run", 0, 0, G_OPTION_ARG_NONE, &opt_dry_run,
    "Print the plan (chain, merged layers, the QMP command) and change "
    "nothing", NULL },
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_state_dir,
    "snapmig's state directory, where the VM's lock is (default: "
    "/var/lib/snapmig for root, else $XDG_STATE_HOME/snapmig)", "DIR" },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static void
print_plan (const SmRebasePlan *plan)
{
  g_autofree char *chain = sm_rebase_chain_to_string (plan->chain);
  const SmRebaseLayer *active = g_ptr_array_index (plan->chain, 0);
  guint i;

  printf ("disk %s: chain %s\n", plan->disk, chain);
  if (plan->job_running)
    printf ("disk %s: its rebase job %s (started by an earlier snapmig) is "
            "still running: wait for it\n", plan->disk, plan->job_id);
  if (!plan->command) {
    printf ("disk %s: nothing to merge\n", plan->disk);
    return;
  }
  for (i = 1; i < plan->chain->len &&
              (plan->base_index < 0 || (int) i < plan->base_index); i++)
    printf ("  merge %s into %s\n",
            ((const SmRebaseLayer *) g_ptr_array_index (plan->chain, i))
              ->filename,
            active->filename);
  if (plan->backing_file)
    printf ("  then %s is backed by '%s' (relative to its directory)\n",
            active->filename, plan->backing_file);
  else
    printf ("  then %s is standalone (no backing file)\n", active->filename);
  printf ("  QMP: %s\n",
          json_object_to_json_string_ext (plan->command,
                                          JSON_C_TO_STRING_PLAIN |
                                          JSON_C_TO_STRING_NOSLASHESCAPE));
}

static void
on_progress (const SmRebasePlan *plan, uint64_t done, uint64_t total,
             void *opaque)
{
  g_autofree char *item = g_strdup_printf ("%s rebase", plan->disk);

  sm_progress_update (opaque, item, done, total);
}

/* The VM view, then the pure plan. */
static SmRebasePlan *
plan_rebase (SmQmp *qmp, const char *disk, uint64_t speed, GError **error)
{
  g_autoptr(SmBlockVm) vm = sm_block_vm_query (qmp, error);

  return vm ? sm_rebase_plan (vm, disk, opt_base, speed, error) : NULL;
}

int
sm_cmd_rebase (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(SmRebasePlan) plan = NULL;
  g_autoptr(SmProgress) progress = NULL;
  g_autofree char *state_dir = NULL;
  g_autofree char *item = NULL;
  g_autofree char *result = NULL;
  g_autofree char *message = NULL;
  uint64_t speed = 0;
  int exit_code;
  bool ok;

  if (!sm_cli_parse ("rebase", "DISK",
                     "Merge the backing layers above IMAGE into the active "
                     "layer of a running VM's disk DISK (its drive name, qdev "
                     "id or node name) with block-stream.  The name of IMAGE "
                     "written into the active image is relative to the active "
                     "image's directory.",
                     entries, &argc, &argv, &exit_code))
    return exit_code;
  if ((exit_code = sm_cli_need_qmp (opt_qmp, "rebase")) != SM_EXIT_OK)
    return exit_code;
  if (argc != 2)
    return sm_cli_usage ("rebase: %s (see 'snapmig rebase --help')",
                         argc < 2 ? "missing DISK"
                                  : "exactly one DISK expected");
  if (opt_bandwidth &&
      !sm_cli_parse_rate (opt_bandwidth, &speed))
    return sm_cli_usage ("rebase: --bandwidth '%s': expected bytes per "
                         "second with an optional K, M, G or T suffix (e.g. "
                         "64M)", opt_bandwidth);
  if (!sm_cli_timeout_ok ("rebase", opt_timeout))
    return SM_EXIT_USAGE;
  state_dir = opt_state_dir ? g_strdup (opt_state_dir)
                            : sm_state_default_dir ();

  qmp = sm_cli_connect (opt_qmp, opt_timeout, &err);
  if (!qmp) {
    return sm_cli_fail ("rebase", err, opt_qmp);
  }
  plan = plan_rebase (qmp, argv[1], speed, &err);
  if (!plan) {
    return sm_cli_fail ("rebase", err, argv[1]);
  }
  if (opt_dry_run) {
    if (sm_cli_json) {
      g_autoptr(json_object) ev = sm_report_event_new ("plan");

      json_object_object_add (ev, "plan", sm_rebase_plan_to_json (plan));
      sm_cli_print_event (ev);
      return sm_cli_result (NULL);
    }
    print_plan (plan);
    return SM_EXIT_OK;
  }

  progress = sm_progress_new (sm_cli_json);
  item = g_strdup_printf ("%s rebase", plan->disk);
  ok = sm_rebase_execute (qmp, plan, state_dir, (unsigned) opt_timeout,
                          on_progress, progress, &err);
  if (!ok && plan->job_running &&
      g_error_matches (err, SM_ERROR, SM_ERROR_BUSY)) {
    /* The job an earlier snapmig left ended between plan and lock: plan
     * again from what it left. */
    g_clear_error (&err);
    g_clear_pointer (&plan, sm_rebase_plan_free);
    plan = plan_rebase (qmp, argv[1], speed, &err);
    ok = plan && sm_rebase_execute (qmp, plan, state_dir,
                                    (unsigned) opt_timeout, on_progress,
                                    progress, &err);
  }
  if (!ok) {
    /* The error line below says why; JSON consumers get it here too. */
    sm_progress_fail (progress, item, sm_cli_json ? err->message : NULL);
    return sm_cli_fail ("rebase", err, argv[1]);
  }
  result = plan->backing_file
           ? g_strdup_printf ("backed by '%s'", plan->backing_file)
           : g_strdup ("standalone");
  if (plan->n_steps)
    sm_progress_done (progress, item, result);
  message = g_strdup_printf ("disk %s: %s%s", plan->disk,
                             plan->n_steps ? "" : "nothing to merge, ",
                             result);
  sm_progress_result (progress, message, sm_rebase_result_json (plan));
  return SM_EXIT_OK;
}
