/* snapmig migrate | migrate-begin | migrate-prepare | migrate-perform |
 * migrate-finish | migrate-confirm — a running VM with its local disks to
 * another host (lib/migrate.h).  Options and printing only.
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
  { "port-range", 0, 0, G_OPTION_ARG_STRING, &opt_port_range, \
    "TCP ports to listen on (default 49152-49215)", "MIN-MAX" }, \
  { "unix", 0, 0, G_OPTION_ARG_NONE, &opt_unix, \
    "Unix sockets instead of TCP (both sides on one file system)", NULL }

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
  DEST_ENTRIES,
  { "dest-cmd", 0, 0, G_OPTION_ARG_STRING, &opt_dest_cmd,
    "Command that runs snapmig on the destination ('ssh hostb snapmig', "
    "'ip netns exec B snapmig'; default: this snapmig)", "CMD" },
  { "dest-state-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_dest_state_dir,
    "snapmig's state directory on the destination", "DIR" },
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
  { "port-range", 0, 0, G_OPTION_ARG_STRING, &opt_port_range,
    "TCP ports to listen on (default 49152-49215)", "MIN-MAX" },
  { "unix", 0, 0, G_OPTION_ARG_NONE, &opt_unix,
    "Unix sockets in the run directory instead of TCP", NULL },
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
  { "port-range", 0, 0, G_OPTION_ARG_STRING, &opt_port_range,
    "Ignored (prepare's option)", "MIN-MAX" },
  { "unix", 0, 0, G_OPTION_ARG_NONE, &opt_unix,
    "Ignored (prepare's option)", NULL },
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
} Printer;

static void
print_event (json_object *ev, void *opaque)
{
  Printer *p = opaque;
  const char *name = json_object_get_string (json_object_object_get (ev, "event"));

  if (p->json) {
    fprintf (p->json_out, "%s\n",
             json_object_to_json_string_ext (ev, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    fflush (p->json_out);
    return;
  }
  if (g_strcmp0 (name, "phase") == 0) {
    FILE *out = p->text_out ? p->text_out : stdout;

    fprintf (out, "phase: %s\n",
             json_object_get_string (json_object_object_get (ev, "phase")));
    fflush (out);
  } else if (g_strcmp0 (name, "progress") == 0 && p->progress) {
    const char *what = json_object_get_string (json_object_object_get (ev, "what"));
    json_object *disk = json_object_object_get (ev, "disk");
    g_autofree char *item = disk ? g_strdup_printf ("%s %s",
                                                    json_object_get_string (disk),
                                                    what)
                                 : g_strdup (what);

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

/* The source options; false (usage error printed) on a bad one. */
static bool
source_options (const char *cmd, SmMigOptions *o, Printer *pr)
{
  guint64 rate = 0;
  int n = (opt_all ? 1 : 0) + (opt_inc ? 1 : 0) + (opt_flatten ? 1 : 0);

  memset (o, 0, sizeof *o);
  if (!opt_qmp) {
    sm_cli_error ("%s: --qmp SOCKET is required", cmd);
    return false;
  }
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
  if (!sm_cli_timeout_ok (cmd, opt_timeout) ||
      !parse_ports (cmd, &o->port_min, &o->port_max))
    return false;
  o->storage = opt_inc ? SM_MIG_STORAGE_INC :
               opt_flatten ? SM_MIG_STORAGE_FLAT : SM_MIG_STORAGE_CHAIN;
  o->disks = opt_migrate_disks ? g_strsplit (opt_migrate_disks, ",", -1) : NULL;
  o->bandwidth = rate;
  o->copy_mode = opt_copy_mode;
  o->dest_host = opt_dest_host;
  o->source_host = opt_source_host;
  o->unix_sockets = opt_unix;
  o->timeout_ms = opt_timeout * 1000;
  o->event = print_event;
  o->opaque = pr;
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

/* A phase command's failure: with --json also one error event on stderr,
 * which migrate reads to keep the error's code. */
static void
phase_error (const char *cmd, const GError *err)
{
  if (opt_json) {
    json_object *o = json_object_new_object ();
    json_object *e = json_object_new_object ();

    json_object_object_add (e, "code",
                            json_object_new_string (sm_error_code_name (err)));
    json_object_object_add (e, "message", json_object_new_string (err->message));
    json_object_object_add (o, "event", json_object_new_string ("error"));
    json_object_object_add (o, "error", e);
    fprintf (stderr, "%s\n", json_object_to_json_string_ext (
               o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put (o);
  }
  sm_cli_gerror (cmd, err);
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
  if (!sm_cli_timeout_ok ("migrate-prepare", opt_timeout))
    return SM_EXIT_USAGE;
  dest_options (&o, &pr);
  if (!opt_json)
    o.event = NULL;
  if (!parse_ports ("migrate-prepare", &o.port_min, &o.port_max))
    return SM_EXIT_USAGE;
  state = state_dir ();
  o.state_dir = state;
  c = read_cookie ("migrate-prepare");
  if (!c)
    return SM_EXIT_FAILURE;
  if (!sm_migrate_prepare (c, &o, opt_dry_run, &err)) {
    c->failed = true;
    c->error_phase = g_strdup ("prepare");
    c->error_message = g_strdup (err->message);
    write_cookie (c);
    phase_error ("migrate-prepare", err);
    return SM_EXIT_FAILURE;
  }
  write_cookie (c);
  return SM_EXIT_OK;
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
  bool ok;

  if (!sm_cli_parse ("migrate-finish", NULL,
                     "Destination: read perform's cookie on stdin, wait for "
                     "the migration to complete, stop the NBD server and "
                     "resume the guest; print the cookie for "
                     "migrate-confirm.  With --cancel: stop the destination "
                     "QEMU and remove every file prepare made.",
                     finish_entries, &argc, &argv, &code))
    return code;
  if (!sm_cli_timeout_ok ("migrate-finish", opt_timeout))
    return SM_EXIT_USAGE;
  dest_options (&o, &pr);
  o.event = NULL;
  state = state_dir ();
  o.state_dir = state;
  c = read_cookie ("migrate-finish");
  if (!c)
    return SM_EXIT_FAILURE;
  ok = opt_cancel ? sm_migrate_cancel_incoming (c, &o, &err)
                  : sm_migrate_finish (c, &o, &err);
  if (!ok) {
    c->failed = true;
    if (!c->error_phase)
      c->error_phase = g_strdup (opt_cancel ? "cancel" : "finish");
    g_free (c->error_message);
    c->error_message = g_strdup (err->message);
    write_cookie (c);
    phase_error ("migrate-finish", err);
    return SM_EXIT_FAILURE;
  }
  write_cookie (c);
  return SM_EXIT_OK;
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
    json_object_object_add (r, "seconds", json_object_new_double (seconds));
    printf ("%s\n", json_object_to_json_string_ext (r, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put (r);
    return;
  }
  printf ("migrated %s to %s: QMP %s, pid %" G_GINT64_FORMAT "\n", c->name,
          c->dest_host, qmp, c->dest_pid);
  if (c->pause_us >= 0)
    printf ("moved: disks %s, RAM %s, guest pause %" G_GINT64_FORMAT
            " ms, %.1f s in all\n", disk, ram, (c->pause_us + 500) / 1000,
            seconds);
  else
    printf ("moved: disks %s, RAM %s, guest pause unknown, %.1f s in all\n",
            disk, ram, seconds);
}

static void
print_failure (const GError *err)
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
  sm_cli_gerror ("migrate", err);
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
  pr = (Printer) { .progress = opt_json ? NULL : progress, .json = opt_json,
                   .json_out = stdout };
  if (!source_options ("migrate", &o, &pr))
    return SM_EXIT_USAGE;
  if (!opt_dest_domain) {
    sm_cli_error ("migrate: --dest-domain DIR is required");
    return SM_EXIT_USAGE;
  }
  if (opt_dest_cmd) {
    GError *e = NULL;
    if (!g_shell_parse_argv (opt_dest_cmd, NULL, &dest_argv, &e)) {
      sm_cli_error ("migrate: --dest-cmd: %s", e->message);
      g_error_free (e);
      return SM_EXIT_USAGE;
    }
  } else {
    dest_argv = g_new0 (char *, 2);
    dest_argv[0] = g_file_read_link ("/proc/self/exe", NULL);
    if (!dest_argv[0])
      dest_argv[0] = g_strdup ("snapmig");
  }
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
  if (!open_source ("migrate", &qmp, &st, &err)) {
    g_prefix_error (&err, "begin: ");
    print_failure (err);
    return SM_EXIT_FAILURE;
  }
  c = sm_migrate_run (qmp, st, &o, (const char *const *) dest_argv,
                      (const char *const *) extra->pdata, opt_dry_run, &plan,
                      &err);
  g_strfreev (o.disks);
  if (!c) {
    print_failure (err);
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
