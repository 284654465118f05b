/* The migrate commands' shared part (cli/cmd-migrate.h): their options,
 * the printers of events and results, the option checks, the cookie's
 * input and output and the command that runs the destination's phases.
 * Options and printing only (lib/migrate.h does the work).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd-migrate.h"
#include "error.h"
#include "migrate-json.h"
#include "report-json.h"

char *mig_opt_qmp;
char *mig_opt_state_dir;
char *mig_opt_dest_state_dir;
char *mig_opt_dest_domain;
char *mig_opt_dest_cmd;
char *mig_opt_dest_host;
char *mig_opt_source_host;
char *mig_opt_dest_run_dir;
char *mig_opt_dest_qemu;
char *mig_opt_port_range;
char *mig_opt_migrate_disks;
char *mig_opt_bandwidth;
char *mig_opt_copy_mode;
gboolean mig_opt_unix;
gboolean mig_opt_all;
gboolean mig_opt_inc;
gboolean mig_opt_flatten;
gboolean mig_opt_dry_run;
gboolean mig_opt_watch_stdin;
int mig_opt_timeout;
gboolean mig_opt_postcopy;
gboolean mig_opt_postcopy_after_precopy;
gboolean mig_opt_postcopy_fallback;
char *mig_opt_postcopy_bandwidth;
gboolean mig_opt_parallel;

gboolean mig_opt_tunnel;
gboolean mig_opt_tls;
char *mig_opt_tls_creds;
int mig_opt_link_timeout = UNSET;

int mig_opt_stall_timeout = UNSET;
/* --tls-creds made absolute by transport_options */
static char *mig_tls_creds_abs;
int mig_opt_recover_timeout = UNSET;
int mig_opt_parallel_connections = UNSET;

/* ---- printing and option checks --------------------------------------- */

double
mig_elapsed_s (gint64 start)
{
  return (double) (g_get_monotonic_time () - start) / 1e6;
}

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
    sm_report_event_stamp (ev);
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
  if (!mig_opt_port_range)
    return true;
  if (sscanf (mig_opt_port_range, "%d-%d", lo, hi) == 2 && *lo > 0 &&
      *hi >= *lo && *hi < 65536)
    return true;
  if (sscanf (mig_opt_port_range, "%d", lo) == 1 && *lo > 0 && *lo < 65536) {
    *hi = *lo;
    return true;
  }
  (void) sm_cli_usage ("%s: --port-range %s: expected MIN-MAX (1-65535)", cmd,
                       mig_opt_port_range);
  return false;
}

/* A SECONDS option other than --timeout: UNSET, or 1 to the maximum. */
static bool
seconds_ok (const char *cmd, const char *option, int seconds)
{
  if (seconds == UNSET || (seconds >= 1 && seconds <= SM_CLI_TIMEOUT_MAX_S))
    return true;
  (void) sm_cli_usage ("%s: %s must be a number of seconds from 1 to %d", cmd,
                       option, SM_CLI_TIMEOUT_MAX_S);
  return false;
}

/* --tunnel, --tls, --tls-creds, --link-timeout into the four fields;
 * false (usage error printed) on a bad combination.  *CREDS is the
 * absolute --tls-creds (caller frees). */
static bool
transport_options (const char *cmd, bool *tunnel, bool *tls, char **creds,
                   int *link_timeout_ms)
{
  *tunnel = mig_opt_tunnel;
  *tls = mig_opt_tls;
  *creds = NULL;
  *link_timeout_ms = 0;
  if (!seconds_ok (cmd, "--link-timeout", mig_opt_link_timeout))
    return false;
  if (mig_opt_link_timeout != UNSET)
    *link_timeout_ms = mig_opt_link_timeout * 1000;
  if (mig_opt_tls && !mig_opt_tls_creds) {
    (void) sm_cli_usage ("%s: --tls needs --tls-creds DIR (ca-cert.pem, "
                         "server-cert.pem, server-key.pem, client-cert.pem, "
                         "client-key.pem)", cmd);
    return false;
  }
  if (mig_opt_tls_creds && !mig_opt_tls) {
    (void) sm_cli_usage ("%s: --tls-creds goes with --tls", cmd);
    return false;
  }
  if (mig_opt_tls && (mig_opt_tunnel || mig_opt_unix)) {
    (void) sm_cli_usage ("%s: --tls is for the direct TCP mode; %s streams "
                         "are unix sockets (a tunnel is encrypted by its "
                         "ssh)", cmd,
                         mig_opt_tunnel ? "--tunnel's" : "--unix's");
    return false;
  }
  if (mig_opt_tls_creds)
    *creds = g_canonicalize_filename (mig_opt_tls_creds, NULL);
  return true;
}

/* The options of every source command: O cleared, then --timeout,
 * --port-range, --unix, the post-copy watch and the events; false (usage
 * error printed) on a bad one. */
bool
mig_base_options (const char *cmd, SmMigOptions *o, Printer *pr)
{
  memset (o, 0, sizeof *o);
  o->postcopy_bandwidth = -1;
  if (!sm_cli_timeout_ok (cmd, mig_opt_timeout) ||
      !parse_ports (cmd, &o->port_min, &o->port_max) ||
      !seconds_ok (cmd, "--stall-timeout", mig_opt_stall_timeout) ||
      !seconds_ok (cmd, "--recover-timeout", mig_opt_recover_timeout))
    return false;
  if (!transport_options (cmd, &o->tunnel, &o->tls, &mig_tls_creds_abs,
                          &o->link_timeout_ms))
    return false;
  o->tls_creds = mig_tls_creds_abs;
  o->unix_sockets = mig_opt_unix || mig_opt_tunnel;
  o->timeout_ms = mig_opt_timeout * 1000;
  o->stall_timeout_ms = mig_opt_stall_timeout == UNSET ? 0 : mig_opt_stall_timeout * 1000;
  o->recover_timeout_ms = mig_opt_recover_timeout == UNSET ? 0
                          : mig_opt_recover_timeout * 1000;
  o->event = print_event;
  o->opaque = pr;
  return true;
}

/* --postcopy* and --parallel*; false (usage error printed) on a bad one. */
static bool
postcopy_options (const char *cmd, SmMigOptions *o)
{
  const char *postcopy =
    mig_opt_postcopy_after_precopy ? "--postcopy-after-precopy"
    : mig_opt_postcopy ? "--postcopy"
    : mig_opt_postcopy_fallback ? "--postcopy-fallback"
    : mig_opt_postcopy_bandwidth ? "--postcopy-bandwidth" : NULL;
  const char *parallel =
    mig_opt_parallel_connections != UNSET ? "--parallel-connections"
    : mig_opt_parallel ? "--parallel" : NULL;
  guint64 rate = 0;

  /* QEMU 7.2 accepts both; later QEMUs refuse post-copy over multifd (its
   * channels are not ordered against the page requests). */
  if (postcopy && parallel) {
    (void) sm_cli_usage ("%s: %s cannot be combined with %s: post-copy over "
                  "multifd is unsafe; drop one of them", cmd, postcopy,
                  parallel);
    return false;
  }
  if ((mig_opt_postcopy_fallback || mig_opt_postcopy_bandwidth) &&
      !mig_opt_postcopy && !mig_opt_postcopy_after_precopy) {
    (void) sm_cli_usage ("%s: %s goes with --postcopy or "
                         "--postcopy-after-precopy", cmd, postcopy);
    return false;
  }
  if (mig_opt_postcopy_bandwidth &&
      g_ascii_strcasecmp (mig_opt_postcopy_bandwidth, "unlimited") != 0 &&
      !sm_cli_parse_rate (mig_opt_postcopy_bandwidth, &rate)) {
    (void) sm_cli_usage ("%s: --postcopy-bandwidth %s: expected a rate such "
                         "as 64M, or 0 or unlimited", cmd,
                         mig_opt_postcopy_bandwidth);
    return false;
  }
  if (mig_opt_parallel_connections != UNSET &&
      mig_opt_parallel_connections < 1) {
    (void) sm_cli_usage ("%s: --parallel-connections %d: expected 1 or more",
                         cmd, mig_opt_parallel_connections);
    return false;
  }
  o->postcopy = mig_opt_postcopy || mig_opt_postcopy_after_precopy;
  o->postcopy_after_precopy = mig_opt_postcopy_after_precopy;
  o->postcopy_fallback = mig_opt_postcopy_fallback;
  o->postcopy_bandwidth = mig_opt_postcopy_bandwidth ? (int64_t) rate : -1;
  o->parallel = mig_opt_parallel_connections != UNSET
                ? mig_opt_parallel_connections
                : mig_opt_parallel ? 2 : 0;
  return true;
}

bool
mig_need_qmp (const char *cmd)
{
  if (mig_opt_qmp || mig_opt_connect)
    return true;
  (void) sm_cli_usage ("%s: --qmp SOCKET is required", cmd);
  return false;
}

/* The source options; false (usage error printed) on a bad one. */
bool
mig_source_options (const char *cmd, SmMigOptions *o, Printer *pr)
{
  guint64 rate = 0;
  int n = (mig_opt_all ? 1 : 0) + (mig_opt_inc ? 1 : 0) +
          (mig_opt_flatten ? 1 : 0);

  if (!mig_need_qmp (cmd) || !mig_base_options (cmd, o, pr) ||
      !postcopy_options (cmd, o))
    return false;
  if (n > 1) {
    (void) sm_cli_usage ("%s: give one of --copy-storage-all, "
                         "--copy-storage-inc and --flatten", cmd);
    return false;
  }
  if (mig_opt_bandwidth && !sm_cli_parse_rate (mig_opt_bandwidth, &rate)) {
    (void) sm_cli_usage ("%s: --bandwidth %s: expected a rate such as 64M",
                         cmd, mig_opt_bandwidth);
    return false;
  }
  if (mig_opt_copy_mode && strcmp (mig_opt_copy_mode, "background") != 0 &&
      strcmp (mig_opt_copy_mode, "write-blocking") != 0) {
    (void) sm_cli_usage ("%s: --copy-mode %s: expected background or "
                         "write-blocking", cmd, mig_opt_copy_mode);
    return false;
  }
  o->storage = mig_opt_inc ? SM_MIG_STORAGE_INC :
               mig_opt_flatten ? SM_MIG_STORAGE_FLAT : SM_MIG_STORAGE_CHAIN;
  o->disks = mig_opt_migrate_disks ? g_strsplit (mig_opt_migrate_disks, ",", -1)
                                   : NULL;
  o->bandwidth = rate;
  o->copy_mode = mig_opt_copy_mode;
  o->dest_host = mig_opt_dest_host;
  o->source_host = mig_opt_source_host;
  return true;
}

/* --state-dir, or the default state directory.  Caller frees. */
char *
mig_state_dir (void)
{
  return mig_opt_state_dir ? g_strdup (mig_opt_state_dir)
                           : sm_state_default_dir ();
}

/* Connects to the source VM and opens its state; prints the error unless
 * ERROR is given. */
bool
mig_open_source (const char *cmd, SmQmp **qmp, SmVmState **st, GError **error)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *dir = mig_state_dir ();

  *qmp = sm_cli_connect (mig_opt_qmp, mig_opt_timeout, &err);
  if (*qmp)
    *st = sm_vm_state_open (dir, mig_opt_qmp, &err);
  if (!*qmp || !*st) {
    if (error)
      g_propagate_error (error, g_steal_pointer (&err));
    else
      (void) sm_cli_fail (cmd, err, mig_opt_qmp);
    return false;
  }
  return true;
}

SmMigCookie *
mig_read_cookie (const char *cmd, int *rc)
{
  g_autoptr(GError) err = NULL;
  SmMigCookie *c = sm_mig_cookie_read_fd (STDIN_FILENO, "standard input",
                                          0, &err);
  if (!c)
    *rc = sm_cli_fail (cmd, err, "standard input");
  return c;
}

void
mig_write_cookie (const SmMigCookie *c)
{
  g_autofree char *xml = sm_mig_cookie_format (c);

  fputs (xml, stdout);
  fflush (stdout);
}

static bool
dest_options (const char *cmd, SmMigDestOptions *o, Printer *pr)
{
  memset (o, 0, sizeof *o);
  if (!transport_options (cmd, &o->tunnel, &o->tls, &mig_tls_creds_abs,
                          &o->link_timeout_ms))
    return false;
  o->tls_creds = mig_tls_creds_abs;
  o->state_dir = mig_opt_state_dir;
  o->domain = mig_opt_dest_domain;
  o->run_dir = mig_opt_dest_run_dir;
  o->qemu_args = mig_opt_dest_qemu;
  o->unix_sockets = mig_opt_unix || mig_opt_tunnel;
  o->watch_fd = mig_opt_watch_stdin ? STDIN_FILENO : -1;
  o->timeout_ms = mig_opt_timeout * 1000;
  o->event = print_event;
  o->opaque = pr;
  return true;
}

/* ---- the phase commands' cookies and errors ----------------------------- */

/* A phase command's failure: with --json its failing result event on
 * stderr, which migrate reads to keep the error's code. */
static int
phase_error (const char *cmd, const GError *err)
{
  return sm_cli_fail (cmd, err, mig_opt_dest_domain);
}

/* A destination phase's start: its options checked and O filled (events
 * to stderr with --json, else none), the cookie read from stdin.  NULL
 * (error printed, *CODE set) on failure.  STATE gets the state directory
 * O names (caller frees). */
SmMigCookie *
mig_dest_start (const char *cmd, SmMigDestOptions *o, Printer *pr,
                char **state, int *code)
{
  SmMigCookie *c;

  *code = SM_EXIT_USAGE;
  if (!sm_cli_timeout_ok (cmd, mig_opt_timeout))
    return NULL;
  if (!dest_options (cmd, o, pr))
    return NULL;
  if (!sm_cli_json)
    o->event = NULL;
  if (!parse_ports (cmd, &o->port_min, &o->port_max))
    return NULL;
  *state = mig_state_dir ();
  o->state_dir = *state;
  c = mig_read_cookie (cmd, code);
  return c;
}

/* A destination phase's end: the cookie on stdout, with ERR (the phase
 * failed, NULL: it did not) in its result.  Returns the exit code. */
int
mig_dest_done (const char *cmd, const char *phase, SmMigCookie *c,
               const GError *err)
{
  if (err) {
    c->failed = true;
    if (!c->error_phase)
      c->error_phase = g_strdup (phase);
    g_free (c->error_message);
    c->error_message = g_strdup (err->message);
  }
  mig_write_cookie (c);
  if (!err)
    return sm_cli_result (NULL);
  return phase_error (cmd, err);
}

/* ---- migrate and migrate-recover ---------------------------------------- */

void
mig_print_result (const SmMigCookie *c, double seconds)
{
  g_autofree char *disk = sm_cli_format_size (c->disk_bytes);
  g_autofree char *ram = sm_cli_format_size (c->ram_bytes);
  g_autoptr(GString) line = g_string_new ("");
  const char *qmp = c->dest_user_qmp ? c->dest_user_qmp : c->dest_qmp;

  if (sm_cli_json) {
    sm_cli_result (sm_mig_result_json (c, seconds));
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
  if (g_strcmp0 (c->transport, "tunnel") == 0 || g_strcmp0 (c->transport, "tls") == 0 ||
      c->link_resumes) {
    g_autofree char *carried = c->tunnel_bytes > 0 ?
      sm_cli_format_size ((guint64) c->tunnel_bytes) : NULL;

    printf ("streams: %s%s%s%s", g_strcmp0 (c->transport, "tunnel") == 0 ?
            "through the tunnel" : g_strcmp0 (c->transport, "tls") == 0 ?
            "TLS" : "direct", carried ? " (" : "", carried ? carried : "",
            carried ? " carried)" : "");
    if (c->link_resumes)
      printf (", the disks' copy resumed %d time%s after a lost link",
              c->link_resumes, c->link_resumes == 1 ? "" : "s");
    printf ("\n");
  }
}

int
mig_print_failure (const char *cmd, const GError *err)
{
  /* The error's object when the library named none: the source VM; its
   * phase: what the library's message begins with ("prepare: ..."). */
  json_object *e = sm_report_error_json (err, mig_opt_qmp);
  const char *colon = strchr (err->message, ':');
  g_autofree char *phase = colon ? g_strndup (err->message,
                                              (gsize) (colon - err->message))
                                 : g_strdup ("migrate");

  json_object_object_add (e, "phase", json_object_new_string (phase));
  return sm_cli_fail_with (cmd, err, e);
}

/* migrate and migrate-recover: events and the result on stdout, progress
 * bars on a terminal (PROGRESS) unless --json. */
Printer
mig_whole_printer (SmProgress *progress)
{
  return (Printer) { .progress = sm_cli_json ? NULL : progress,
                     .json = sm_cli_json, .json_out = stdout };
}

/* migrate and migrate-recover: connects to the source, or prints the
 * failure as their result, as one of PHASE. */
bool
mig_whole_open (const char *cmd, const char *phase, SmQmp **qmp, SmVmState **st,
                int *rc)
{
  g_autoptr(GError) err = NULL;

  if (mig_open_source (cmd, qmp, st, &err))
    return true;
  g_prefix_error (&err, "%s: ", phase);
  *rc = mig_print_failure (cmd, err);
  return false;
}

/* The command that runs snapmig on the destination (--dest-cmd, else this
 * snapmig) into *DEST_ARGV, and the options every destination phase gets
 * into EXTRA (NULL-ended); false (usage error printed) on a bad
 * --dest-cmd. */
bool
mig_dest_command (const char *cmd, char ***dest_argv, GPtrArray *extra)
{
  if (mig_opt_dest_cmd) {
    g_autoptr(GError) e = NULL;

    if (!g_shell_parse_argv (mig_opt_dest_cmd, NULL, dest_argv, &e)) {
      (void) sm_cli_usage ("%s: --dest-cmd: %s", cmd, e->message);
      return false;
    }
  } else {
    *dest_argv = g_new0 (char *, 2);
    (*dest_argv)[0] = g_file_read_link ("/proc/self/exe", NULL);
    if (!(*dest_argv)[0])
      (*dest_argv)[0] = g_strdup ("snapmig");
  }
  if (mig_opt_dest_domain)
    g_ptr_array_add (extra, g_strconcat ("--dest-domain=", mig_opt_dest_domain, NULL));
  if (mig_opt_dest_state_dir)
    g_ptr_array_add (extra, g_strconcat ("--state-dir=", mig_opt_dest_state_dir, NULL));
  if (mig_opt_dest_run_dir)
    g_ptr_array_add (extra, g_strconcat ("--dest-run-dir=", mig_opt_dest_run_dir, NULL));
  if (mig_opt_dest_qemu)
    g_ptr_array_add (extra, g_strconcat ("--dest-qemu=", mig_opt_dest_qemu,
                                         NULL));
  if (mig_opt_port_range)
    g_ptr_array_add (extra, g_strconcat ("--port-range=", mig_opt_port_range, NULL));
  if (mig_opt_unix)
    g_ptr_array_add (extra, g_strdup ("--unix"));
  if (mig_opt_tunnel)
    g_ptr_array_add (extra, g_strdup ("--tunnel"));
  if (mig_opt_tls)
    g_ptr_array_add (extra, g_strdup ("--tls"));
  if (mig_opt_tls_creds)
    g_ptr_array_add (extra, g_strconcat ("--tls-creds=", mig_tls_creds_abs ?
                                         mig_tls_creds_abs : mig_opt_tls_creds,
                                         NULL));
  if (mig_opt_link_timeout != UNSET)
    g_ptr_array_add (extra, g_strdup_printf ("--link-timeout=%d",
                                             mig_opt_link_timeout));
  if (mig_opt_timeout)
    g_ptr_array_add (extra, g_strdup_printf ("--timeout=%d", mig_opt_timeout));
  if (sm_cli_debug)
    g_ptr_array_add (extra, g_strdup ("--debug"));
  g_ptr_array_add (extra, NULL);
  return true;
}
