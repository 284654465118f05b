/* snapmig copy-worker — hidden: the lower layers' copy worker that create
 * starts (lib/layer-copy.c, sm_copy_worker_spawn execs it detached).  It
 * reads its layers from the status file and records its progress there.
 */
#include "cli.h"

#include "interrupt.h"
#include "layer-copy.h"

static char *opt_status;
static int opt_ready_fd = -1;

static const GOptionEntry entries[] = {
  { "status", 0, 0, G_OPTION_ARG_FILENAME, &opt_status,
    "The copy's status file (its layers, then its progress)", "FILE" },
  { "ready-fd", 0, 0, G_OPTION_ARG_INT, &opt_ready_fd,
    "Descriptor that gets the worker's PID once it runs", "FD" },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

int
sm_cmd_copy_worker (int argc, char **argv)
{
  int exit_code;

  /* The worker outlives the command that started it: that command's
   * interruption handlers are not its own. */
  sm_interrupt_uninstall ();
  if (!sm_cli_parse ("copy-worker", NULL,
                     "Internal: the lower layers' copy worker that create "
                     "starts.", entries, &argc, &argv, &exit_code))
    return exit_code;
  if (!opt_status || opt_ready_fd < 0 || argc != 1) {
    sm_cli_error ("copy-worker: --status FILE and --ready-fd FD are "
                  "required (an internal command: create starts it)");
    return SM_EXIT_USAGE;
  }
  return sm_copy_worker_main (opt_status, opt_ready_fd);
}
