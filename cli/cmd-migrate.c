/* snapmig migrate | migrate-begin | migrate-prepare | migrate-perform |
 * migrate-finish | migrate-confirm | migrate-start-postcopy |
 * migrate-recover — a running VM with its local disks to another host
 * (lib/migrate.h).  Options and printing only.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "error.h"
#include "interrupt.h"
#include "migrate.h"
#include "progress.h"
#include "qmp.h"
#include "state.h"

static char *opt_qmp;
static char *opt_state_dir;
static char *opt_dest_state_dir;
static char *opt_dest_domain;
static char *opt_dest_cmd;
static char *opt_dest_host;
static char *opt_source_host;
static char *opt_dest_run_dir;
static char *opt_dest_qemu;
static char *opt_port_range;
static char *opt_migrate_disks;
static char *opt_bandwidth;
static char *opt_copy_mode;
static gboolean opt_unix;
static gboolean opt_all;
static gboolean opt_inc;
static gboolean opt_flatten;
static gboolean opt_json;
static gboolean opt_dry_run;
static gboolean opt_cancel;
static gboolean opt_failed;
static gboolean opt_dest_never_ran;
static gboolean opt_watch_stdin;
static int opt_timeout;
static gboolean opt_postcopy;
static gboolean opt_postcopy_after_precopy;
static gboolean opt_postcopy_fallback;
static char *opt_postcopy_bandwidth;
static gboolean opt_parallel;
static gboolean opt_incoming;

/* An integer option not given (GOption leaves the variable as it is). */
#define UNSET G_MININT
static int opt_stall_timeout = UNSET;
static int opt_recover_timeout = UNSET;
static int opt_parallel_connections = UNSET;

/* --port-range and --unix, with what they mean to the command. */
#define PORT_ENTRIES(port_help, unix_help) \
  { "port-range", 0, 0, G_OPTION_ARG_STRING, &opt_port_range, port_help, \
    "MIN-MAX" }, \
  { "unix", 0, 0, G_OPTION_ARG_NONE, &opt_unix, unix_help, NULL }
#define PORT_HELP "TCP ports to listen on (default 49152-49215)"

#define SOURCE_ENTRIES \
  { "qmp", 0, 0, G_OPTION_ARG_FILENAME, &opt_qmp, \
    "The source VM's QMP socket", "SOCKET" }, \
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_state_dir, \
    "snapmig's state directory on this host", "DIR" }, \
  SM_CLI_TIMEOUT_ENTRY (opt_timeout, "Give up when QEMU does not answer, or " \
                        "a copy makes no progress, for SECONDS (default 30 " \
                        "for a reply, 60 for progress)")

#define PLAN_ENTRIES \
  { "copy-storage-all", 0, 0, G_OPTION_ARG_NONE, &opt_all, \
    "Copy every layer, keeping each disk's chain (default)", NULL }, \
  { "copy-storage-inc", 0, 0, G_OPTION_ARG_NONE, &opt_inc, \
    "Copy only each disk's top: its backing files are on storage both " \
    "hosts see at the same paths", NULL }, \
  { "flatten", 0, 0, G_OPTION_ARG_NONE, &opt_flatten, \
    "Copy each disk into one image (libvirt's way)", NULL }, \
  { "migrate-disks", 0, 0, G_OPTION_ARG_STRING, &opt_migrate_disks, \
    "Only these disks move (the others must be on storage the destination " \
    "sees)", "vda,vdb" }, \
  { "bandwidth", 0, 0, G_OPTION_ARG_STRING, &opt_bandwidth, \
    "Limit the disks' and the RAM's copy to RATE per second", "RATE" }, \
  { "copy-mode", 0, 0, G_OPTION_ARG_STRING, &opt_copy_mode, \
    "background (default) or write-blocking (always converges)", "MODE" }, \
  { "dest-host", 0, 0, G_OPTION_ARG_STRING, &opt_dest_host, \
    "Address the destination listens on and the source connects to " \
    "(default 127.0.0.1)", "ADDR" }, \
  { "source-host", 0, 0, G_OPTION_ARG_STRING, &opt_source_host, \
    "Address the source's layer server listens on (default: the local " \
    "address that routes to --dest-host)", "ADDR" }, \
  PORT_ENTRIES (PORT_HELP, "Unix sockets instead of TCP (both sides on one " \
                "file system)"), \
  { "postcopy", 0, 0, G_OPTION_ARG_NONE, &opt_postcopy, \
    "Allow post-copy (postcopy-ram on both sides): the switch is made by " \
    "migrate-start-postcopy or --postcopy-after-precopy", NULL }, \
  { "postcopy-after-precopy", 0, 0, G_OPTION_ARG_NONE, \
    &opt_postcopy_after_precopy, \
    "Switch to post-copy after the first full pass of pre-copy (implies " \
    "--postcopy)", NULL }, \
  { "postcopy-fallback", 0, 0, G_OPTION_ARG_NONE, &opt_postcopy_fallback, \
    "Run pre-copy, and say so, when the destination cannot post-copy " \
    "(userfaultfd), instead of refusing", NULL }, \
  { "postcopy-bandwidth", 0, 0, G_OPTION_ARG_STRING, &opt_postcopy_bandwidth, \
    "Limit the RAM's post-copy to RATE per second (0 or unlimited: no " \
    "limit; default: --bandwidth's)", "RATE" }, \
  { "parallel", 0, 0, G_OPTION_ARG_NONE, &opt_parallel, \
    "Migrate the RAM over several connections (multifd; 2 unless " \
    "--parallel-connections)", NULL }, \
  { "parallel-connections", 0, 0, G_OPTION_ARG_INT, \
    &opt_parallel_connections, \
    "The number of multifd connections (1 or more; implies --parallel)", \
    "N" }

/* The watch of a running post-copy (migrate, migrate-recover; perform
 * ends when the post-copy begins). */
#define WATCH_ENTRIES \
  { "stall-timeout", 0, 0, G_OPTION_ARG_INT, &opt_stall_timeout, \
    "Post-copy: no RAM progress for SECONDS means the link is dead, and " \
    "it is recovered (default 10)", "SECONDS" }, \
  { "recover-timeout", 0, 0, G_OPTION_ARG_INT, &opt_recover_timeout, \
    "Post-copy: retry recovering a dead link for SECONDS, then give up " \
    "with both sides paused (default 600)", "SECONDS" }

/* Where the destination's phases run (migrate, migrate-recover). */
#define DEST_CMD_ENTRIES \
  { "dest-cmd", 0, 0, G_OPTION_ARG_STRING, &opt_dest_cmd, \
    "Command that runs snapmig on the destination ('ssh hostb snapmig', " \
    "'ip netns exec B snapmig'; default: this snapmig)", "CMD" }, \
  { "dest-state-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_dest_state_dir, \
    "snapmig's state directory on the destination", "DIR" }

#define DEST_ENTRIES \
  { "dest-domain", 0, 0, G_OPTION_ARG_FILENAME, &opt_dest_domain, \
    "The destination storage domain (a directory)", "DIR" }, \
  { "dest-run-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_dest_run_dir, \
    "Where the destination QEMU's sockets, pidfile and log go (empty or " \
    "new; default STATE/run/ID)", "DIR" }, \
  { "dest-qemu", 0, 0, G_OPTION_ARG_STRING, &opt_dest_qemu, \
    "The destination QEMU's command line (default: the source's, with " \
    "paths mapped)", "'ARGS...'" }

static const GOptionEntry migrate_entries[] = {
  SOURCE_ENTRIES,
  PLAN_ENTRIES,
  WATCH_ENTRIES,
  DEST_ENTRIES,
  DEST_CMD_ENTRIES,
  { "json", 0, 0, G_OPTION_ARG_NONE, &opt_json,
    "JSON lines: events, then one result", NULL },
  { "dry-run", 0, 0, G_OPTION_ARG_NONE, &opt_dry_run,
    "Print both hosts' plans (migration cookies); change nothing", NULL },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static const GOptionEntry begin_entries[] = {
  SOURCE_ENTRIES,
  PLAN_ENTRIES,
  { "dry-run", 0, 0, G_OPTION_ARG_NONE, &opt_dry_run,
    "Print the plan; change nothing", NULL },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static const GOptionEntry prepare_entries[] = {
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_state_dir,
    "snapmig's state directory on this host", "DIR" },
  SM_CLI_TIMEOUT_ENTRY (opt_timeout, SM_CLI_TIMEOUT_HELP),
  DEST_ENTRIES,
  PORT_ENTRIES (PORT_HELP, "Unix sockets in the run directory instead of TCP"),
  { "dry-run", 0, 0, G_OPTION_ARG_NONE, &opt_dry_run,
    "Print the plan; change nothing", NULL },
  { "json", 0, 0, G_OPTION_ARG_NONE, &opt_json,
    "Progress as JSON lines on stderr", NULL },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static const GOptionEntry perform_entries[] = {
  SOURCE_ENTRIES,
  { "json", 0, 0, G_OPTION_ARG_NONE, &opt_json,
    "Progress as JSON lines on stderr", NULL },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static const GOptionEntry finish_entries[] = {
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_state_dir,
    "snapmig's state directory on this host", "DIR" },
  SM_CLI_TIMEOUT_ENTRY (opt_timeout, SM_CLI_TIMEOUT_HELP),
  { "cancel", 0, 0, G_OPTION_ARG_NONE, &opt_cancel,
    "Stop the destination QEMU and remove what prepare made", NULL },
  { "json", 0, 0, G_OPTION_ARG_NONE, &opt_json,
    "Progress and the error as JSON lines on stderr", NULL },
  { "watch-stdin", 0, 0, G_OPTION_ARG_NONE, &opt_watch_stdin,
    "Fail (and clean up) when standard input closes before the migration "
    "completed: migrate keeps it open while the source works", NULL },
  /* accepted so that migrate can pass every phase the same options */
  DEST_ENTRIES,
  PORT_ENTRIES ("Ignored (prepare's option)", "Ignored (prepare's option)"),
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

static const GOptionEntry start_postcopy_entries[] = {
  SOURCE_ENTRIES,
  { "json", 0, 0, G_OPTION_ARG_NONE, &opt_json,
    "The outcome as one JSON document", NULL },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static const GOptionEntry recover_entries[] = {
  SOURCE_ENTRIES,
  WATCH_ENTRIES,
  DEST_CMD_ENTRIES,
  { "incoming", 0, 0, G_OPTION_ARG_NONE, &opt_incoming,
    "Destination side: read the migration's cookie on stdin, listen again "
    "for the paused post-copy, print the cookie with the new endpoint", NULL },
  { "json", 0, 0, G_OPTION_ARG_NONE, &opt_json,
    "JSON lines: events, then one result (--incoming: progress and the "
    "error on stderr)", NULL },
  DEST_ENTRIES,
  PORT_ENTRIES (PORT_HELP, "Ignored (the migration's endpoint says unix or "
                "TCP)"),
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

/* ---- shared ----------------------------------------------------------- */

static double
elapsed_s (gint64 start)
{
  return (double) (g_get_monotonic_time () - start) / 1e6;
}

typedef struct {
  SmProgress *progress;
  bool json;
  FILE *json_out;
  FILE *text_out;              /* NULL: stdout; the phase commands keep
                                  stdout for their cookie */
  char stage[16];              /* the RAM's stage last shown ("pre-copy",
                                  "post-copy"), "" before */
} Printer;

/* What a phase line adds for people. */
static const char *
phase_note (const char *phase)
{
  if (g_strcmp0 (phase, "postcopy") == 0)
    return " (the guest runs on the destination; the rest of its RAM "
           "follows on demand)";
  if (g_strcmp0 (phase, "recover") == 0)
    return " (the post-copy's link failed: pausing both sides and "
           "resuming over a new connection)";
  return "";
}

static void
print_event (json_object *ev, void *opaque)
{
  Printer *p = opaque;
  const char *name = json_object_get_string (json_object_object_get (ev, "event"));
  FILE *out = p->text_out ? p->text_out : stdout;

  if (p->json) {
    fprintf (p->json_out, "%s\n",
             json_object_to_json_string_ext (ev, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    fflush (p->json_out);
    return;
  }
  if (g_strcmp0 (name, "phase") == 0) {
    const char *phase = json_object_get_string (json_object_object_get (ev, "phase"));

    fprintf (out, "phase: %s%s\n", phase, phase_note (phase));
    fflush (out);
  } else if (g_strcmp0 (name, "message") == 0) {
    fprintf (out, "%s\n",
             json_object_get_string (json_object_object_get (ev, "message")));
    fflush (out);
  } else if (g_strcmp0 (name, "progress") == 0 && p->progress) {
    const char *what = json_object_get_string (json_object_object_get (ev, "what"));
    const char *stage = json_object_get_string (json_object_object_get (ev, "stage"));
    json_object *disk = json_object_object_get (ev, "disk");
    g_autofree char *item = disk ? g_strdup_printf ("%s %s",
                                                    json_object_get_string (disk),
                                                    what)
                          : stage ? g_strdup_printf ("%s %s", what, stage)
                          : g_strdup (what);

    /* A line when the RAM's stage changes: how much is still on the
     * source is what a post-copy's risk depends on. */
    if (stage && strcmp (stage, p->stage) != 0) {
      g_autofree char *left = sm_cli_format_size (
        (guint64) json_object_get_int64 (json_object_object_get (ev, "remaining")));

      g_strlcpy (p->stage, stage, sizeof p->stage);
      fprintf (out, "%s: %s, %s still on the source\n", what, stage, left);
      fflush (out);
    }
    sm_progress_update (p->progress, item,
                        (uint64_t) json_object_get_int64 (json_object_object_get (ev, "done")),
                        (uint64_t) json_object_get_int64 (json_object_object_get (ev, "total")));
  }
}

static bool
parse_ports (const char *cmd, int *lo, int *hi)
{
  *lo = *hi = 0;
  if (!opt_port_range)
    return true;
  if (sscanf (opt_port_range, "%d-%d", lo, hi) == 2 && *lo > 0 &&
      *hi >= *lo && *hi < 65536)
    return true;
  if (sscanf (opt_port_range, "%d", lo) == 1 && *lo > 0 && *lo < 65536) {
    *hi = *lo;
    return true;
  }
  sm_cli_error ("%s: --port-range %s: expected MIN-MAX (1-65535)", cmd,
                opt_port_range);
  return false;
}

/* A SECONDS option other than --timeout: UNSET, or 1 to the maximum. */
static bool
seconds_ok (const char *cmd, const char *option, int seconds)
{
  if (seconds == UNSET || (seconds >= 1 && seconds <= SM_CLI_TIMEOUT_MAX_S))
    return true;
  sm_cli_error ("%s: %s must be a number of seconds from 1 to %d", cmd,
                option, SM_CLI_TIMEOUT_MAX_S);
  return false;
}

/* The options of every source command: O cleared, then --timeout,
 * --port-range, --unix, the post-copy watch and the events; false (usage
 * error printed) on a bad one. */
static bool
base_options (const char *cmd, SmMigOptions *o, Printer *pr)
{
  memset (o, 0, sizeof *o);
  o->postcopy_bandwidth = -1;
  if (!sm_cli_timeout_ok (cmd, opt_timeout) ||
      !parse_ports (cmd, &o->port_min, &o->port_max) ||
      !seconds_ok (cmd, "--stall-timeout", opt_stall_timeout) ||
      !seconds_ok (cmd, "--recover-timeout", opt_recover_timeout))
    return false;
  o->unix_sockets = opt_unix;
  o->timeout_ms = opt_timeout * 1000;
  o->stall_timeout_ms = opt_stall_timeout == UNSET ? 0 : opt_stall_timeout * 1000;
  o->recover_timeout_ms = opt_recover_timeout == UNSET ? 0
                          : opt_recover_timeout * 1000;
  o->event = print_event;
  o->opaque = pr;
  return true;
}

/* --postcopy* and --parallel*; false (usage error printed) on a bad one. */
static bool
postcopy_options (const char *cmd, SmMigOptions *o)
{
  const char *postcopy = opt_postcopy_after_precopy ? "--postcopy-after-precopy"
                         : opt_postcopy ? "--postcopy"
                         : opt_postcopy_fallback ? "--postcopy-fallback"
                         : opt_postcopy_bandwidth ? "--postcopy-bandwidth" : NULL;
  const char *parallel = opt_parallel_connections != UNSET ? "--parallel-connections"
                         : opt_parallel ? "--parallel" : NULL;
  guint64 rate = 0;

  /* QEMU 7.2 accepts both; later QEMUs refuse post-copy over multifd (its
   * channels are not ordered against the page requests). */
  if (postcopy && parallel) {
    sm_cli_error ("%s: %s cannot be combined with %s: post-copy over "
                  "multifd is unsafe; drop one of them", cmd, postcopy,
                  parallel);
    return false;
  }
  if ((opt_postcopy_fallback || opt_postcopy_bandwidth) && !opt_postcopy &&
      !opt_postcopy_after_precopy) {
    sm_cli_error ("%s: %s goes with --postcopy or --postcopy-after-precopy",
                  cmd, postcopy);
    return false;
  }
  if (opt_postcopy_bandwidth &&
      g_ascii_strcasecmp (opt_postcopy_bandwidth, "unlimited") != 0 &&
      !sm_cli_parse_rate (opt_postcopy_bandwidth, &rate)) {
    sm_cli_error ("%s: --postcopy-bandwidth %s: expected a rate such as 64M, "
                  "or 0 or unlimited", cmd, opt_postcopy_bandwidth);
    return false;
  }
  if (opt_parallel_connections != UNSET && opt_parallel_connections < 1) {
    sm_cli_error ("%s: --parallel-connections %d: expected 1 or more", cmd,
                  opt_parallel_connections);
    return false;
  }
  o->postcopy = opt_postcopy || opt_postcopy_after_precopy;
  o->postcopy_after_precopy = opt_postcopy_after_precopy;
  o->postcopy_fallback = opt_postcopy_fallback;
  o->postcopy_bandwidth = opt_postcopy_bandwidth ? (int64_t) rate : -1;
  o->parallel = opt_parallel_connections != UNSET ? opt_parallel_connections
                : opt_parallel ? 2 : 0;
  return true;
}

static bool
need_qmp (const char *cmd)
{
  if (opt_qmp)
    return true;
  sm_cli_error ("%s: --qmp SOCKET is required", cmd);
  return false;
}

/* The source options; false (usage error printed) on a bad one. */
static bool
source_options (const char *cmd, SmMigOptions *o, Printer *pr)
{
  guint64 rate = 0;
  int n = (opt_all ? 1 : 0) + (opt_inc ? 1 : 0) + (opt_flatten ? 1 : 0);

  if (!need_qmp (cmd) || !base_options (cmd, o, pr) ||
      !postcopy_options (cmd, o))
    return false;
  if (n > 1) {
    sm_cli_error ("%s: give one of --copy-storage-all, --copy-storage-inc "
                  "and --flatten", cmd);
    return false;
  }
  if (opt_bandwidth && !sm_cli_parse_rate (opt_bandwidth, &rate)) {
    sm_cli_error ("%s: --bandwidth %s: expected a rate such as 64M", cmd,
                  opt_bandwidth);
    return false;
  }
  if (opt_copy_mode && strcmp (opt_copy_mode, "background") != 0 &&
      strcmp (opt_copy_mode, "write-blocking") != 0) {
    sm_cli_error ("%s: --copy-mode %s: expected background or "
                  "write-blocking", cmd, opt_copy_mode);
    return false;
  }
  o->storage = opt_inc ? SM_MIG_STORAGE_INC :
               opt_flatten ? SM_MIG_STORAGE_FLAT : SM_MIG_STORAGE_CHAIN;
  o->disks = opt_migrate_disks ? g_strsplit (opt_migrate_disks, ",", -1) : NULL;
  o->bandwidth = rate;
  o->copy_mode = opt_copy_mode;
  o->dest_host = opt_dest_host;
  o->source_host = opt_source_host;
  return true;
}

/* --state-dir, or the default state directory.  Caller frees. */
static char *
state_dir (void)
{
  return opt_state_dir ? g_strdup (opt_state_dir) : sm_state_default_dir ();
}

/* Connects to the source VM and opens its state; prints the error unless
 * ERROR is given. */
static bool
open_source (const char *cmd, SmQmp **qmp, SmVmState **st, GError **error)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *dir = state_dir ();

  *qmp = sm_cli_connect (opt_qmp, opt_timeout, &err);
  if (*qmp)
    *st = sm_vm_state_open (dir, opt_qmp, &err);
  if (!*qmp || !*st) {
    if (error)
      g_propagate_error (error, g_steal_pointer (&err));
    else
      sm_cli_gerror (cmd, err);
    return false;
  }
  return true;
}

static SmMigCookie *
read_cookie (const char *cmd)
{
  g_autoptr(GError) err = NULL;
  SmMigCookie *c = sm_mig_cookie_read_fd (STDIN_FILENO, "standard input",
                                          0, &err);
  if (!c)
    sm_cli_gerror (cmd, err);
  return c;
}

static void
write_cookie (const SmMigCookie *c)
{
  g_autofree char *xml = sm_mig_cookie_format (c);

  fputs (xml, stdout);
  fflush (stdout);
}

static void
dest_options (SmMigDestOptions *o, Printer *pr)
{
  memset (o, 0, sizeof *o);
  o->state_dir = opt_state_dir;
  o->domain = opt_dest_domain;
  o->run_dir = opt_dest_run_dir;
  o->qemu_args = opt_dest_qemu;
  o->unix_sockets = opt_unix;
  o->watch_fd = opt_watch_stdin ? STDIN_FILENO : -1;
  o->timeout_ms = opt_timeout * 1000;
  o->event = print_event;
  o->opaque = pr;
}

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
  if (!source_options ("migrate-begin", &o, &pr))
    return SM_EXIT_USAGE;
  if (!open_source ("migrate-begin", &qmp, &st, NULL))
    return SM_EXIT_FAILURE;
  o.event = NULL;
  c = sm_migrate_begin (qmp, st, &o, opt_dry_run, &err);
  g_strfreev (o.disks);
  if (!c) {
    sm_cli_gerror ("migrate-begin", err);
    return SM_EXIT_FAILURE;
  }
  write_cookie (c);
  return SM_EXIT_OK;
}

/* One JSON document on OUT: {"event":EVENT,"error":{"code","message"}},
 * without "event" when EVENT is NULL. */
static void
print_json_error (FILE *out, const char *event, const GError *err)
{
  json_object *o = json_object_new_object ();
  json_object *e = json_object_new_object ();

  json_object_object_add (e, "code",
                          json_object_new_string (sm_error_code_name (err)));
  json_object_object_add (e, "message", json_object_new_string (err->message));
  if (event)
    json_object_object_add (o, "event", json_object_new_string (event));
  json_object_object_add (o, "error", e);
  fprintf (out, "%s\n", json_object_to_json_string_ext (
             o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  fflush (out);
  json_object_put (o);
}

/* A phase command's failure: with --json also one error event on stderr,
 * which migrate reads to keep the error's code. */
static void
phase_error (const char *cmd, const GError *err)
{
  if (opt_json)
    print_json_error (stderr, "error", err);
  sm_cli_gerror (cmd, err);
}

/* A destination phase's start: its options checked and O filled (events
 * to stderr with --json, else none), the cookie read from stdin.  NULL
 * (error printed, *CODE set) on failure.  STATE gets the state directory
 * O names (caller frees). */
static SmMigCookie *
dest_start (const char *cmd, SmMigDestOptions *o, Printer *pr, char **state,
            int *code)
{
  SmMigCookie *c;

  *code = SM_EXIT_USAGE;
  if (!sm_cli_timeout_ok (cmd, opt_timeout))
    return NULL;
  dest_options (o, pr);
  if (!opt_json)
    o->event = NULL;
  if (!parse_ports (cmd, &o->port_min, &o->port_max))
    return NULL;
  *state = state_dir ();
  o->state_dir = *state;
  *code = SM_EXIT_FAILURE;
  c = read_cookie (cmd);
  return c;
}

/* A destination phase's end: the cookie on stdout, with ERR (the phase
 * failed, NULL: it did not) in its result.  Returns the exit code. */
static int
dest_done (const char *cmd, const char *phase, SmMigCookie *c,
           const GError *err)
{
  if (err) {
    c->failed = true;
    if (!c->error_phase)
      c->error_phase = g_strdup (phase);
    g_free (c->error_message);
    c->error_message = g_strdup (err->message);
  }
  write_cookie (c);
  if (!err)
    return SM_EXIT_OK;
  phase_error (cmd, err);
  return SM_EXIT_FAILURE;
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
  c = dest_start ("migrate-prepare", &o, &pr, &state, &code);
  if (!c)
    return code;
  sm_migrate_prepare (c, &o, opt_dry_run, &err);
  return dest_done ("migrate-prepare", "prepare", c, err);
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
  pr = (Printer) { .progress = opt_json ? NULL : progress, .json = opt_json,
                   .json_out = stderr, .text_out = stderr };
  if (!source_options ("migrate-perform", &o, &pr))
    return SM_EXIT_USAGE;
  o.converge_ms = opt_timeout * 1000;
  if (!open_source ("migrate-perform", &qmp, &st, NULL))
    return SM_EXIT_FAILURE;
  c = read_cookie ("migrate-perform");
  if (!c)
    return SM_EXIT_FAILURE;
  if (!sm_migrate_perform (qmp, st, c, &o, &err)) {
    c->failed = true;
    c->error_phase = g_strdup ("perform");
    c->error_message = g_strdup (err->message);
    write_cookie (c);
    sm_cli_gerror ("migrate-perform", err);
    return SM_EXIT_FAILURE;
  }
  write_cookie (c);
  return SM_EXIT_OK;
}

int
sm_cmd_migrate_finish (int argc, char **argv)
{
  g_autoptr(SmMigCookie) c = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *state = NULL;
  Printer pr = { 0 };
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
  c = dest_start ("migrate-finish", &o, &pr, &state, &code);
  if (!c)
    return code;
  o.event = NULL;
  if (opt_cancel)
    sm_migrate_cancel_incoming (c, &o, &err);
  else
    sm_migrate_finish (c, &o, &err);
  return dest_done ("migrate-finish", opt_cancel ? "cancel" : "finish", c, err);
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
  if (!source_options ("migrate-confirm", &o, &pr))
    return SM_EXIT_USAGE;
  if (!open_source ("migrate-confirm", &qmp, &st, NULL))
    return SM_EXIT_FAILURE;
  g_strfreev (o.disks);
  c = read_cookie ("migrate-confirm");
  if (!c)
    return SM_EXIT_FAILURE;
  if (opt_dest_never_ran) {
    if (!opt_failed) {
      sm_cli_error ("migrate-confirm: --dest-never-ran goes with --failed");
      return SM_EXIT_USAGE;
    }
    c->failed = true;
    c->dest_ran = false;
    g_free (c->error_phase);
    c->error_phase = g_strdup ("finish");
  }
  if (!sm_migrate_confirm (qmp, st, c, !opt_failed && !c->failed, &err)) {
    sm_cli_gerror ("migrate-confirm", err);
    return SM_EXIT_FAILURE;
  }
  printf ("%s\n", opt_failed || c->failed ?
          "migration rolled back: the guest runs on the source" :
          "migration confirmed: the source QEMU has quit");
  return SM_EXIT_OK;
}

/* ---- migrate ------------------------------------------------------------ */

static void
print_result (const SmMigCookie *c, double seconds)
{
  g_autofree char *disk = sm_cli_format_size (c->disk_bytes);
  g_autofree char *ram = sm_cli_format_size (c->ram_bytes);
  g_autoptr(GString) line = g_string_new ("");
  const char *qmp = c->dest_user_qmp ? c->dest_user_qmp : c->dest_qmp;

  if (opt_json) {
    json_object *r = json_object_new_object ();

    json_object_object_add (r, "event", json_object_new_string ("result"));
    json_object_object_add (r, "ok", json_object_new_boolean (true));
    json_object_object_add (r, "id", json_object_new_string (c->id));
    json_object_object_add (r, "dest-host", json_object_new_string (c->dest_host));
    json_object_object_add (r, "dest-qmp", json_object_new_string (qmp));
    json_object_object_add (r, "dest-snapmig-qmp", json_object_new_string (c->dest_qmp));
    json_object_object_add (r, "dest-pid", json_object_new_int64 (c->dest_pid));
    json_object_object_add (r, "dest-run-dir", json_object_new_string (c->dest_run_dir));
    json_object_object_add (r, "dest-domain", json_object_new_string (c->dest_domain));
    json_object_object_add (r, "storage",
                            json_object_new_string (sm_mig_storage_to_string (c->storage)));
    json_object_object_add (r, "disk-bytes", json_object_new_int64 ((int64_t) c->disk_bytes));
    json_object_object_add (r, "ram-bytes", json_object_new_int64 ((int64_t) c->ram_bytes));
    if (c->pause_us >= 0) {
      json_object_object_add (r, "pause-ms", json_object_new_int64 ((c->pause_us + 500) / 1000));
      json_object_object_add (r, "pause-us", json_object_new_int64 (c->pause_us));
    }
    json_object_object_add (r, "postcopy", json_object_new_boolean (c->postcopy_used));
    json_object_object_add (r, "postcopy-requests",
                            json_object_new_int64 ((int64_t) c->postcopy_requests));
    json_object_object_add (r, "recoveries", json_object_new_int (c->recoveries));
    if (c->postcopy_refused)
      json_object_object_add (r, "postcopy-refused",
                              json_object_new_string (c->postcopy_refused));
    json_object_object_add (r, "seconds", json_object_new_double (seconds));
    printf ("%s\n", json_object_to_json_string_ext (r, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put (r);
    return;
  }
  /* Which way the RAM went, when post-copy was a question (--postcopy,
   * or a destination that refused it); a plain migration's line is as
   * it always was. */
  if (c->postcopy_used) {
    g_string_append_printf (line, "post-copy: %" G_GUINT64_FORMAT
                            " pages on demand", c->postcopy_requests);
    if (c->recoveries)
      g_string_append_printf (line, ", %d recover%s", c->recoveries,
                              c->recoveries == 1 ? "y" : "ies");
    g_string_append (line, ", ");
  } else if (c->postcopy || c->postcopy_refused)
    g_string_append (line, "pre-copy, ");
  if (c->pause_us >= 0)
    g_string_append_printf (line, "guest pause %" G_GINT64_FORMAT " ms",
                            (c->pause_us + 500) / 1000);
  else
    g_string_append (line, "guest pause unknown");
  printf ("migrated %s to %s: QMP %s, pid %" G_GINT64_FORMAT "\n", c->name,
          c->dest_host, qmp, c->dest_pid);
  printf ("moved: disks %s, RAM %s, %s, %.1f s in all\n", disk, ram,
          line->str, seconds);
  if (c->postcopy_refused)
    printf ("post-copy refused by the destination, pre-copy used: %s\n",
            c->postcopy_refused);
}

static void
print_failure (const char *cmd, const GError *err)
{
  if (opt_json) {
    json_object *r = json_object_new_object ();
    json_object *e = json_object_new_object ();
    const char *colon = strchr (err->message, ':');
    g_autofree char *phase = colon ? g_strndup (err->message,
                                                (gsize) (colon - err->message))
                                   : g_strdup ("migrate");

    json_object_object_add (e, "code", json_object_new_string (sm_error_code_name (err)));
    json_object_object_add (e, "message", json_object_new_string (err->message));
    json_object_object_add (e, "phase", json_object_new_string (phase));
    json_object_object_add (r, "event", json_object_new_string ("result"));
    json_object_object_add (r, "ok", json_object_new_boolean (false));
    json_object_object_add (r, "error", e);
    printf ("%s\n", json_object_to_json_string_ext (r, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put (r);
  }
  sm_cli_gerror (cmd, err);
}

/* migrate and migrate-recover: events and the result on stdout, progress
 * bars on a terminal (PROGRESS) unless --json. */
static Printer
whole_printer (SmProgress *progress)
{
  return (Printer) { .progress = opt_json ? NULL : progress, .json = opt_json,
                     .json_out = stdout };
}

/* migrate and migrate-recover: connects to the source, or prints the
 * failure as their result, as one of PHASE. */
static bool
whole_open (const char *cmd, const char *phase, SmQmp **qmp, SmVmState **st)
{
  g_autoptr(GError) err = NULL;

  if (open_source (cmd, qmp, st, &err))
    return true;
  g_prefix_error (&err, "%s: ", phase);
  print_failure (cmd, err);
  return false;
}

/* The command that runs snapmig on the destination (--dest-cmd, else this
 * snapmig) into *DEST_ARGV, and the options every destination phase gets
 * into EXTRA (NULL-ended); false (usage error printed) on a bad
 * --dest-cmd. */
static bool
dest_command (const char *cmd, char ***dest_argv, GPtrArray *extra)
{
  if (opt_dest_cmd) {
    g_autoptr(GError) e = NULL;

    if (!g_shell_parse_argv (opt_dest_cmd, NULL, dest_argv, &e)) {
      sm_cli_error ("%s: --dest-cmd: %s", cmd, e->message);
      return false;
    }
  } else {
    *dest_argv = g_new0 (char *, 2);
    (*dest_argv)[0] = g_file_read_link ("/proc/self/exe", NULL);
    if (!(*dest_argv)[0])
      (*dest_argv)[0] = g_strdup ("snapmig");
  }
  if (opt_dest_domain)
    g_ptr_array_add (extra, g_strconcat ("--dest-domain=", opt_dest_domain, NULL));
  if (opt_dest_state_dir)
    g_ptr_array_add (extra, g_strconcat ("--state-dir=", opt_dest_state_dir, NULL));
  if (opt_dest_run_dir)
    g_ptr_array_add (extra, g_strconcat ("--dest-run-dir=", opt_dest_run_dir, NULL));
  if (opt_dest_qemu)
    g_ptr_array_add (extra, g_strconcat ("--dest-qemu=", opt_dest_qemu, NULL));
  if (opt_port_range)
    g_ptr_array_add (extra, g_strconcat ("--port-range=", opt_port_range, NULL));
  if (opt_unix)
    g_ptr_array_add (extra, g_strdup ("--unix"));
  if (opt_timeout)
    g_ptr_array_add (extra, g_strdup_printf ("--timeout=%d", opt_timeout));
  if (sm_cli_debug)
    g_ptr_array_add (extra, g_strdup ("--debug"));
  g_ptr_array_add (extra, NULL);
  return true;
}

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
  pr = whole_printer (progress);
  if (!source_options ("migrate", &o, &pr))
    return SM_EXIT_USAGE;
  o.converge_ms = opt_timeout * 1000;
  if (!opt_dest_domain) {
    sm_cli_error ("migrate: --dest-domain DIR is required");
    g_strfreev (o.disks);
    return SM_EXIT_USAGE;
  }
  if (!dest_command ("migrate", &dest_argv, extra)) {
    g_strfreev (o.disks);
    return SM_EXIT_USAGE;
  }
  if (!whole_open ("migrate", "begin", &qmp, &st)) {
    g_strfreev (o.disks);
    return SM_EXIT_FAILURE;
  }
  c = sm_migrate_run (qmp, st, &o, (const char *const *) dest_argv,
                      (const char *const *) extra->pdata, opt_dry_run, &plan,
                      &err);
  g_strfreev (o.disks);
  if (!c) {
    print_failure ("migrate", err);
    return SM_EXIT_FAILURE;
  }
  if (opt_dry_run) {
    g_autofree char *src = sm_mig_cookie_format (c);
    printf ("# source (%s): snapshot of each disk's top, then the lower "
            "layers exported\n%s", c->hostname, src);
    printf ("# destination: files to create and QEMU to start\n%s", plan);
    return SM_EXIT_OK;
  }
  print_result (c, elapsed_s (start));
  return SM_EXIT_OK;
}

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
  if (!need_qmp (cmd) || !sm_cli_timeout_ok (cmd, opt_timeout))
    return SM_EXIT_USAGE;
  /* No QMP connection of our own: the running migrate holds the monitor
   * (the library asks QEMU itself when nobody does). */
  dir = state_dir ();
  st = sm_vm_state_open (dir, opt_qmp, &err);
  if (!st || !sm_migrate_start_postcopy (st, opt_qmp,
                                         sm_cli_timeout_s (opt_timeout) * 1000,
                                         &err)) {
    if (opt_json)
      print_json_error (stdout, NULL, err);
    sm_cli_gerror (cmd, err);
    return SM_EXIT_FAILURE;
  }
  if (opt_json) {
    json_object *r = json_object_new_object ();

    json_object_object_add (r, "ok", json_object_new_boolean (true));
    json_object_object_add (r, "qmp", json_object_new_string (
                              sm_vm_state_canonical_address (st)));
    printf ("%s\n", json_object_to_json_string_ext (
              r, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put (r);
  } else
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

  if (opt_qmp || opt_dest_cmd || opt_dest_state_dir ||
      opt_stall_timeout != UNSET || opt_recover_timeout != UNSET) {
    sm_cli_error ("%s: --incoming takes none of --qmp, --dest-cmd, "
                  "--dest-state-dir, --stall-timeout and --recover-timeout "
                  "(they are the source's)", cmd);
    return SM_EXIT_USAGE;
  }
  c = dest_start (cmd, &o, &pr, &state, &code);
  if (!c)
    return code;
  sm_migrate_recover_listen (c, &o, &err);
  return dest_done (cmd, "recover", c, err);
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
  if (opt_incoming)
    return recover_incoming (cmd);
  progress = sm_progress_new (false);
  pr = whole_printer (progress);
  if (!need_qmp (cmd) || !base_options (cmd, &o, &pr) ||
      !dest_command (cmd, &dest_argv, extra))
    return SM_EXIT_USAGE;
  if (!whole_open (cmd, "recover", &qmp, &st))
    return SM_EXIT_FAILURE;
  c = sm_migrate_recover_run (qmp, st, &o, (const char *const *) dest_argv,
                              (const char *const *) extra->pdata, &err);
  if (!c) {
    print_failure (cmd, err);
    return SM_EXIT_FAILURE;
  }
  print_result (c, elapsed_s (start));
  return SM_EXIT_OK;
}
