/* snapmig create | pivot | abort | status | recover — mirrored live storage
 * migration as a snapshot transaction (lib/lsm.h).
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "lsm.h"
#include "lsm-json.h"
#include "migrate.h"
#include "ops.h"
#include "progress.h"
#include "qmp.h"
#include "report-json.h"
#include "state.h"

static char *opt_qmp;
static char *opt_state_dir;
static char *opt_name;
static char **opt_diskspecs;
static char *opt_mirror_domain;
static gboolean opt_mirror;
static gboolean opt_atomic;
static gboolean opt_reuse_external;
static gboolean opt_disk_only;
static gboolean opt_no_metadata;
static char *opt_bandwidth;
static char *opt_copy_mode;
static gboolean opt_wait;
static int opt_timeout;
static gboolean opt_dry_run;
static gboolean opt_delete_source;

#define QMP_ENTRY \
  { "qmp", 0, 0, G_OPTION_ARG_FILENAME, &opt_qmp, \
    "The VM's QMP socket path or HOST:PORT (required)", "SOCKET" }, \
  SM_CLI_LIBVIRT_ENTRIES
#define STATE_ENTRY \
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_state_dir, \
    "snapmig's state directory (default: /var/lib/snapmig for root, else " \
    "$XDG_STATE_HOME/snapmig)", "DIR" }
#define TIMEOUT_ENTRY \
  SM_CLI_TIMEOUT_ENTRY (opt_timeout, \
    "Give up when the mirrors and copies are not done within SECONDS, or " \
    "QEMU does not answer within SECONDS (default: no limit for the " \
    "mirrors and copies, 30 for each answer)")
#define REPLY_TIMEOUT_ENTRY \
  SM_CLI_TIMEOUT_ENTRY (opt_timeout, SM_CLI_TIMEOUT_HELP)
#define DRY_RUN_ENTRY \
  { "dry-run", 0, 0, G_OPTION_ARG_NONE, &opt_dry_run, \
    "Print the plan (files to create, QMP commands) and change nothing", \
    NULL }
#define END_ENTRY { NULL, 0, 0, 0, NULL, NULL, NULL }

static const GOptionEntry create_entries[] = {
  QMP_ENTRY,
  { "name", 0, 0, G_OPTION_ARG_STRING, &opt_name,
    "Name of the snapshot (without FILE)", "NAME" },
  { "diskspec", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opt_diskspecs,
    "Snapshot DISK (QMP device or qdev id): new top file=PATH, mirror=PATH "
    "(destination top), snapshot=no; repeatable",
    "DISK[,file=PATH][,mirror=PATH][,snapshot=no]" },
  { "mirror-domain", 0, 0, G_OPTION_ARG_FILENAME, &opt_mirror_domain,
    "Move disks to the storage domain DIR, pre-creating each one's whole "
    "chain there: every writable disk when no --diskspec is given, else "
    "each --diskspec disk without mirror= (implies --mirror)", "DIR" },
  { "mirror", 0, 0, G_OPTION_ARG_NONE, &opt_mirror,
    "Mirror the new tops.  --mirror-domain, --diskspec mirror= and "
    "<mirror> in FILE imply it; given alone, without any of them, it is a "
    "usage error.  Without a mirror destination create takes a plain "
    "external snapshot (new tops beside the old ones)", NULL },
  { "atomic", 0, 0, G_OPTION_ARG_NONE, &opt_atomic,
    "All disks or none (implied by mirrors and --reuse-external)", NULL },
  { "reuse-external", 0, 0, G_OPTION_ARG_NONE, &opt_reuse_external,
    "The target files exist already and are reused (they must fit); "
    "implies --atomic", NULL },
  { "disk-only", 0, 0, G_OPTION_ARG_NONE, &opt_disk_only,
    "Take FILE's snapshot without the memory state it asks for (<memory "
    "snapshot='internal|external'>, <memory file=>, a <state> other than "
    "disk-snapshot or shutoff), with a note, instead of refusing it: "
    "snapmig's snapshots hold the disks only", NULL },
  { "no-metadata", 0, 0, G_OPTION_ARG_NONE, &opt_no_metadata,
    "Do not record the snapshot (not with mirrors)", NULL },
  { "bandwidth", 0, 0, G_OPTION_ARG_STRING, &opt_bandwidth,
    "Limit each mirror, and the copy of the lower layers, to RATE bytes per "
    "second (suffixes K, M, G, T: powers of 1024; only with mirrors)",
    "RATE" },
  { "copy-mode", 0, 0, G_OPTION_ARG_STRING, &opt_copy_mode,
    "Mirror copy mode: background (default) or write-blocking "
    "(always converges; QEMU >= 3.0; only with mirrors)", "MODE" },
  { "wait", 0, 0, G_OPTION_ARG_NONE, &opt_wait,
    "Wait until every mirror is ready and every copy done", NULL },
  TIMEOUT_ENTRY, DRY_RUN_ENTRY, STATE_ENTRY, END_ENTRY,
};

static const GOptionEntry pivot_entries[] = {
  QMP_ENTRY,
  { "delete-source", 0, 0, G_OPTION_ARG_NONE, &opt_delete_source,
    "Afterwards remove the source chain files the VM no longer uses", NULL },
  TIMEOUT_ENTRY, DRY_RUN_ENTRY, STATE_ENTRY, END_ENTRY,
};

static const GOptionEntry abort_entries[] = {
  QMP_ENTRY, TIMEOUT_ENTRY, DRY_RUN_ENTRY, STATE_ENTRY, END_ENTRY,
};

static const GOptionEntry status_entries[] = {
  QMP_ENTRY, REPLY_TIMEOUT_ENTRY, STATE_ENTRY, END_ENTRY,
};

static gboolean opt_incoming;
static gboolean opt_dest_never_ran;
static gboolean opt_dest_runs;

static const GOptionEntry recover_entries[] = {
  QMP_ENTRY, REPLY_TIMEOUT_ENTRY, STATE_ENTRY,
  { "incoming", 0, 0, G_OPTION_ARG_NONE, &opt_incoming,
    "On a migration's destination: finish or roll back the incoming "
    "migrations of the state directory (no --qmp)", NULL },
  { "dest-never-ran", 0, 0, G_OPTION_ARG_NONE, &opt_dest_never_ran,
    "On a migration's source: the destination never ran the guest (its "
    "'recover --incoming' rolled back), so a source paused after a "
    "completed migration may be resumed", NULL },
  { "dest-runs", 0, 0, G_OPTION_ARG_NONE, &opt_dest_runs,
    "On a migration's source: the destination runs the guest after a "
    "completed migration; the source QEMU quits and its snapshot is folded "
    "back", NULL },
  END_ENTRY,
};

static int
timeout_ms (void)
{
  return opt_timeout > 0 ? opt_timeout * 1000 : -1;
}

/* --timeout is seconds >= 0 (0: no limit on progress, the default for
 * replies); prints the usage error. */
static bool
timeout_ok (const char *command)
{
  return sm_cli_timeout_ok (command, opt_timeout);
}

/* The VM of --qmp, --state-dir and --timeout. */
static SmOpTarget
target (void)
{
  SmOpTarget t = { .address = opt_qmp, .state_dir = opt_state_dir,
                   .reply_timeout_s = sm_cli_timeout_s (opt_timeout),
                   .wait_timeout_ms = timeout_ms () };

  return t;
}

typedef struct {
  SmProgress *progress;
  GHashTable *finished;        /* items reported done */
  GHashTable *last;            /* item → "DONE/TOTAL" last reported */
} Progress;

static void
progress_init (Progress *p, SmProgress *progress)
{
  p->progress = progress;
  p->finished = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  p->last = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}

static void
progress_clear (Progress *p)
{
  g_clear_pointer (&p->finished, g_hash_table_unref);
  g_clear_pointer (&p->last, g_hash_table_unref);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Progress, progress_clear)

/* With --dry-run, prints the plan of R and returns true: the command is
 * done. */
static bool
dry_run (const SmOpResult *r)
{
  if (!opt_dry_run)
    return false;
  if (sm_cli_json) {
    /* JSON lines as ever: the plan as one event's text, then the result. */
    g_autoptr(json_object) ev = sm_report_event_new ("plan");

    json_object_object_add (ev, "text", json_object_new_string (r->plan_text));
    sm_cli_print_event (ev);
    sm_cli_result (NULL);
    return true;
  }
  fputs (r->plan_text, stdout);
  return true;
}

static void
on_progress (const char *item, uint64_t done, uint64_t total, bool finished,
             void *opaque)
{
  Progress *p = opaque;
  g_autofree char *now = g_strdup_printf ("%" G_GUINT64_FORMAT "/%"
                                          G_GUINT64_FORMAT, done, total);

  if (g_hash_table_contains (p->finished, item))
    return;
  /* The library polls; only changes are worth a line. */
  if (g_strcmp0 (g_hash_table_lookup (p->last, item), now) != 0) {
    sm_progress_update (p->progress, item, done, total);
    g_hash_table_insert (p->last, g_strdup (item), g_steal_pointer (&now));
  }
  if (finished) {
    g_hash_table_add (p->finished, g_strdup (item));
    sm_progress_done (p->progress, item, strstr (item, " mirror") ? "ready"
                                                                  : "copied");
  }
}

typedef struct {
  SmProgress *progress;
  bool created;
} Created;

/* What each disk runs on once the snapshot is taken. */
static void
on_created (const SmLsmPlan *plan, void *opaque)
{
  Created *c = opaque;
  size_t i;

  c->created = true;
  for (i = 0; i < plan->info->disks->len; i++) {
    const SmLsmDisk *d = plan->info->disks->pdata[i];
    g_autofree char *msg = NULL;

    if (d->mirror)
      msg = g_strdup_printf ("disk %s: now on %s, mirrored to %s (job %s)",
                             d->name, d->new_top, d->mirror, d->job_id);
    else
      msg = g_strdup_printf ("disk %s: now on %s", d->name, d->new_top);
    sm_progress_event (c->progress, "disk", msg,
                       sm_lsm_disk_created_json (d));
  }
  {
    g_autofree char *msg = g_strdup_printf ("snapshot %s created",
                                            plan->info->snapshot);

    sm_progress_event (c->progress, "created", msg,
                       sm_lsm_snapshot_result_json (plan->info->snapshot, -1));
  }
}

int
sm_cmd_create (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmProgress) progress = NULL;
  g_auto(Progress) p = { 0 };
  SmOpTarget t;
  SmOpCreateArgs a = { 0 };
  SmOpResult r = { 0 };
  Created c = { NULL, false };
  int exit_code;
  bool ok;

  if (!sm_cli_parse ("create", "[FILE]",
                     "Take an external disk snapshot of a running VM, "
                     "optionally mirroring each new top to a destination "
                     "(live storage migration).  FILE is a <domainsnapshot> "
                     "document; without it --name and --diskspec or "
                     "--mirror-domain describe the snapshot.",
                     create_entries, &argc, &argv, &exit_code))
    return exit_code;
  if ((exit_code = sm_cli_need_qmp (opt_qmp, "create")) != SM_EXIT_OK)
    return exit_code;
  if (argc > 2 || (argc == 2 && (opt_name || opt_diskspecs ||
                                 opt_mirror_domain)) ||
      (argc == 1 && !opt_name))
    return sm_cli_usage ("create: give either FILE or --name, with "
                         "--diskspec and --mirror-domain as needed (see "
                         "'snapmig create --help')");
  if (opt_bandwidth &&
      !sm_cli_parse_rate (opt_bandwidth, &a.options.bandwidth))
    return sm_cli_usage ("create: --bandwidth '%s': expected bytes per "
                         "second with an optional K, M, G or T suffix (e.g. "
                         "64M)", opt_bandwidth);
  if (!timeout_ok ("create"))
    return SM_EXIT_USAGE;
  a.options.copy_mode = opt_copy_mode;
  a.options.flags = (opt_atomic ? SM_LSM_ATOMIC : 0) |
                    (opt_reuse_external ? SM_LSM_REUSE_EXTERNAL : 0) |
                    (opt_disk_only ? SM_LSM_DISK_ONLY : 0) |
                    (opt_no_metadata ? SM_LSM_NO_METADATA : 0);
  a.xml_file = argc == 2 ? argv[1] : NULL;
  a.name = opt_name;
  a.diskspecs = (const char *const *) opt_diskspecs;
  a.mirror_domain = opt_mirror_domain;
  a.require_mirror = opt_mirror;
  a.dry_run = opt_dry_run;
  a.wait = opt_wait;
  a.progress = on_progress;
  a.opaque = &p;
  a.created = on_created;
  a.created_opaque = &c;
  progress = sm_progress_new (sm_cli_json);
  progress_init (&p, progress);
  c.progress = progress;
  t = target ();
  ok = sm_op_create (&t, &a, &r, &err);
  if (r.plan && r.plan->note)
    sm_cli_note ("create: %s", r.plan->note);
  if (!ok) {
    /* After the snapshot, a failure of the wait leaves the move. */
    exit_code = r.usage
      ? sm_cli_usage ("create: %s", err->message)
      : sm_cli_fail (c.created ? "create --wait" : "create", err,
                     opt_name ? opt_name : opt_qmp);
  } else if (!dry_run (&r)) {
    g_autofree char *msg = NULL;

    if (r.waited)
      msg = g_strdup_printf ("snapshot %s: mirrors ready, copies done; "
                             "ready to pivot", r.plan->info->snapshot);
    sm_progress_result (progress, msg,
                        sm_lsm_snapshot_result_json (r.plan->info->snapshot,
                                                     r.waited));
  }
  sm_op_result_clear (&r);
  return ok ? SM_EXIT_OK : exit_code;
}

static bool
one_name (const char *cmd, int argc)
{
  if (argc == 2)
    return true;
  (void) sm_cli_usage ("%s: %s (see 'snapmig %s --help')", cmd,
                       argc < 2 ? "missing snapshot NAME"
                       : "exactly one NAME expected",
                       cmd);
  return false;
}

/* The guest an interrupted pivot left paused, resumed: what pivot and
 * abort do first (sm_op_pivot, sm_op_abort) and say. */
typedef struct {
  const char *cmd;
  SmProgress *progress;
} Resumed;

static void
on_resumed (const char *line, void *opaque)
{
  Resumed *rs = opaque;

  json_object *f = json_object_new_object ();

  json_object_object_add (f, "command", json_object_new_string (rs->cmd));
  sm_progress_event (rs->progress, "resumed", line, f);
}

int
sm_cmd_pivot (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmProgress) progress = NULL;
  g_autofree char *msg = NULL;
  g_auto(Progress) p = { 0 };
  SmOpTarget t;
  SmOpSwitchArgs a = { 0 };
  SmOpResult r = { 0 };
  Resumed rs = { "pivot", NULL };
  const SmLsmPlan *plan;
  SmLsmPivotResult result;
  int exit_code;
  size_t i;

  if (!sm_cli_parse ("pivot", "NAME",
                     "Switch every mirrored disk of the current snapshot NAME "
                     "to its destination once the mirrors are ready and the "
                     "lower layers copied, then delete the snapshot.",
                     pivot_entries, &argc, &argv, &exit_code))
    return exit_code;
  if ((exit_code = sm_cli_need_qmp (opt_qmp, "pivot")) != SM_EXIT_OK)
    return exit_code;
  if (!one_name ("pivot", argc))
    return SM_EXIT_USAGE;
  if (!timeout_ok ("pivot"))
    return SM_EXIT_USAGE;
  progress = sm_progress_new (sm_cli_json);
  progress_init (&p, progress);
  rs.progress = progress;
  a.snapshot = argv[1];
  a.flags = opt_delete_source ? SM_LSM_DELETE_SOURCE : 0;
  a.dry_run = opt_dry_run;
  a.progress = on_progress;
  a.resumed = on_resumed;
  a.opaque = &p;
  a.resumed_opaque = &rs;
  t = target ();
  if (!sm_op_pivot (&t, &a, &r, &err)) {
    sm_op_result_clear (&r);
    return sm_cli_fail ("pivot", err, argv[1]);
  }
  if (dry_run (&r)) {
    sm_op_result_clear (&r);
    return SM_EXIT_OK;
  }
  plan = r.plan;
  result = r.pivot;            /* still r's, cleared with it */
  for (i = 0; i < plan->info->disks->len; i++) {
    const SmLsmDisk *d = plan->info->disks->pdata[i];
    g_autofree char *line = NULL;

    if (!d->mirror)
      continue;
    line = g_strdup_printf ("disk %s: now on %s", d->name, d->mirror);
    sm_progress_event (progress, "disk", line,
                       sm_lsm_disk_active_json (d, true));
  }
  /* --delete-source: every file removed, every file kept and why. */
  for (i = 0; result.removed && i < result.removed->len; i++) {
    const char *file = result.removed->pdata[i];
    g_autofree char *line = g_strdup_printf ("removed %s", file);

    sm_progress_event (progress, "removed", line, sm_lsm_removed_json (file));
  }
  for (i = 0; result.kept && i < result.kept->len; i++) {
    const SmLsmKeptFile *k = result.kept->pdata[i];
    g_autofree char *line = g_strdup_printf ("kept %s: %s", k->path, k->why);

    sm_progress_event (progress, "kept", line, sm_lsm_kept_json (k));
  }
  /* The pause from QEMU's STOP and RESUME events (pause-from "events"),
   * or from before stop to after cont ("clock") when an event was
   * missing: pause-ms in whole milliseconds, pause-us for the detail. */
  if (result.pause_us >= 0)
    msg = g_strdup_printf ("snapshot %s pivoted; guest paused %.1f ms for the "
                           "switch (%s)", argv[1],
                           (double) result.pause_us / 1000,
                           g_strcmp0 (result.pause_from, "events") == 0
                           ? "QEMU's STOP to RESUME events"
                           : "from stop sent to cont answered");
  else
    msg = g_strdup_printf ("snapshot %s pivoted; guest not paused", argv[1]);
  /* --json: the result lists the files --delete-source removed
   * (absolute paths), and the pause as numbers. */
  sm_progress_result (progress, msg,
                      sm_lsm_pivot_result_json (argv[1], &result));
  sm_op_result_clear (&r);
  return SM_EXIT_OK;
}

int
sm_cmd_abort (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmProgress) progress = NULL;
  SmOpTarget t;
  SmOpSwitchArgs a = { 0 };
  SmOpResult r = { 0 };
  Resumed rs = { "abort", NULL };
  const SmLsmPlan *plan;
  int exit_code;
  size_t i;

  if (!sm_cli_parse ("abort", "NAME",
                     "Cancel the mirrors and copies of snapshot NAME, remove "
                     "the destination files snapmig created and delete the "
                     "snapshot.  The VM keeps running on the source chain "
                     "(the snapshot's new top stays its active layer).",
                     abort_entries, &argc, &argv, &exit_code))
    return exit_code;
  if ((exit_code = sm_cli_need_qmp (opt_qmp, "abort")) != SM_EXIT_OK)
    return exit_code;
  if (!one_name ("abort", argc))
    return SM_EXIT_USAGE;
  if (!timeout_ok ("abort"))
    return SM_EXIT_USAGE;
  progress = sm_progress_new (sm_cli_json);
  rs.progress = progress;
  a.snapshot = argv[1];
  a.dry_run = opt_dry_run;
  a.resumed = on_resumed;
  a.resumed_opaque = &rs;
  t = target ();
  if (!sm_op_abort (&t, &a, &r, &err)) {
    sm_op_result_clear (&r);
    return sm_cli_fail ("abort", err, argv[1]);
  }
  if (dry_run (&r)) {
    sm_op_result_clear (&r);
    return SM_EXIT_OK;
  }
  plan = r.plan;
  for (i = 0; i < plan->info->disks->len; i++) {
    const SmLsmDisk *d = plan->info->disks->pdata[i];
    g_autofree char *line = g_strdup_printf (
      "disk %s: stays on %s (the snapshot's new top, backed by %s)", d->name,
      d->new_top, d->orig_top);

    sm_progress_event (progress, "disk", line,
                       sm_lsm_disk_active_json (d, false));
  }
  {
    g_autofree char *msg = g_strdup_printf (
      "snapshot %s aborted; the destination files snapmig created are "
      "removed", argv[1]);

    sm_progress_result (progress, msg,
                        sm_lsm_snapshot_result_json (argv[1], -1));
  }
  sm_op_result_clear (&r);
  return SM_EXIT_OK;
}

/* status's text: one line per disk, copy and journal of STATUS
 * (sm_lsm_status's document, or sm_lsm_status_watched's). */
static void
print_status_text (const char *name, json_object *status)
{
  json_object *watched = NULL;
  json_object *arr;
  bool ready = false;
  size_t i;

  printf ("snapshot %s\n", name);
  if (json_object_object_get_ex (status, "watched", &watched)) {
    int64_t pid = 0;
    json_object *age = NULL;

    sm_json_get_int64 (watched, "pid", &pid);
    json_object_object_get_ex (watched, "age-seconds", &age);
    printf ("  (from snapmig pid %" G_GINT64_FORMAT ", which waits for this "
            "move and holds the VM's monitor; written %.1f s ago)\n", pid,
            json_object_get_double (age));
  }
  arr = sm_json_get_array (status, "disks");
  for (i = 0; i < json_object_array_length (arr); i++) {
    json_object *o = json_object_array_get_idx (arr, i);
    const char *active = sm_json_get_string (o, "active");
    const char *job = sm_json_get_string (o, "job");
    const char *mirror = sm_json_get_string (o, "mirror");
    int64_t done = 0, total = 0;

    sm_json_get_int64 (o, "done", &done);
    sm_json_get_int64 (o, "total", &total);
    printf ("  disk %s: active %s", sm_json_get_string (o, "name"),
            active ? active : "?");
    if (job)
      printf (", mirror %s %s %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT,
              job, sm_json_get_string (o, "status"), done, total);
    else if (mirror)
      printf (", mirror to %s: no job", mirror);
    printf ("\n");
  }
  arr = sm_json_get_array (status, "copies");
  for (i = 0; i < json_object_array_length (arr); i++) {
    json_object *o = json_object_array_get_idx (arr, i);
    const char *why = sm_json_get_string (o, "error");
    int64_t done = 0, total = 0;
    bool skipped = false;

    sm_json_get_int64 (o, "done", &done);
    sm_json_get_int64 (o, "total", &total);
    sm_json_get_bool (o, "skipped", &skipped);
    printf ("  copy %s -> %s: %s %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT
            "%s%s%s\n",
            sm_json_get_string (o, "source"), sm_json_get_string (o, "dest"),
            sm_json_get_string (o, "state"), done, total,
            skipped ? " (the destination held it already: not rewritten)"
                    : "",
            why ? ": " : "", why ? why : "");
  }
  if (sm_json_get_string (status, "run-state"))
    printf ("  guest: %s\n", sm_json_get_string (status, "run-state"));
  arr = sm_json_get_array (status, "journals");
  for (i = 0; arr && i < json_object_array_length (arr); i++) {
    json_object *o = json_object_array_get_idx (arr, i);
    json_object *sent = sm_json_get_array (o, "complete-sent");
    bool paused = false;

    sm_json_get_bool (o, "guest-paused-by-it", &paused);
    printf ("  %s of %s in flight or interrupted (journal %s)%s%s: if no "
            "snapmig runs, 'snapmig recover' finishes it\n",
            sm_json_get_string (o, "op"), name,
            sm_json_get_string (o, "journal"),
            paused ? "; it paused the guest" : "",
            sent && json_object_array_length (sent)
            ? "; it sent block-job-complete" : "");
  }
  if (sm_json_get_bool (status, "ready-to-pivot", &ready) && ready)
    printf ("nothing is moving; ready to pivot (snapmig pivot %s)\n", name);
}

int
sm_cmd_status (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) status = NULL;
  g_autofree char *name = NULL;
  SmOpTarget t;
  int exit_code;

  if (!sm_cli_parse ("status", "[NAME]",
                     "Show the mirrors and lower-layer copies of snapshot "
                     "NAME (default: the current snapshot).  While a create "
                     "--wait or a pivot waits for them (and holds QEMU's "
                     "monitor), show what that command last published.",
                     status_entries, &argc, &argv, &exit_code))
    return exit_code;
  t = target ();
  if (!sm_cli_vm_target ("status", opt_qmp, &t, &exit_code))
    return exit_code;
  if (argc > 2)
    return sm_cli_usage ("status: at most one NAME expected");
  if (!timeout_ok ("status"))
    return SM_EXIT_USAGE;
  if (!sm_op_status (&t, argc == 2 ? argv[1] : NULL, &status, &name, &err)) {
    g_autofree char *label = sm_op_target_label (&t);

    return sm_cli_fail ("status", err, argc == 2 ? argv[1] : label);
  }
  if (!name) {
    /* No snapshot to show: nothing snapmig started is moving, which is an
     * answer, not a failure (a script polls status before a create). */
    if (sm_cli_json) {
      g_autoptr(json_object) doc = sm_lsm_status_idle ();

      return sm_cli_print_document (doc) ? SM_EXIT_OK : SM_EXIT_FAILURE;
    }
    printf ("nothing is moving: the VM has no current snapshot\n");
    return SM_EXIT_OK;
  }
  if (sm_cli_json)
    return sm_cli_print_document (status) ? SM_EXIT_OK : SM_EXIT_FAILURE;
  print_status_text (name, status);
  return SM_EXIT_OK;
}

int
sm_cmd_recover (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(SmVmState) st = NULL;
  g_auto(GStrv) done = NULL;
  g_autofree char *state_dir = NULL;
  int exit_code;
  size_t i;
  bool ok;

  if (!sm_cli_parse ("recover", NULL,
                     "Finish or roll back operations on the VM that a crash "
                     "interrupted, from their journals weighed against what "
                     "the VM runs on now: an interrupted create is rolled "
                     "back (the VM returns to its original chain, created "
                     "files are removed, each one named); a guest an "
                     "interrupted pivot paused is resumed; a pivot "
                     "interrupted after its switch is finished; otherwise an "
                     "interrupted pivot or abort is reported, to be run "
                     "again.  No file the VM uses is removed.  A damaged "
                     "journal or move record is kept and reported with what "
                     "the VM runs on and the fix (exit status 2).",
                     recover_entries, &argc, &argv, &exit_code))
    return exit_code;
  if (opt_incoming) {
    g_autofree char *dir = opt_state_dir ? g_strdup (opt_state_dir)
                                         : sm_state_default_dir ();
    g_autofree char *msg = sm_migrate_recover_incoming (dir, &err);

    if (!msg)
      return sm_cli_fail ("recover", err, dir);
    if (sm_cli_json) {
      g_auto(GStrv) lines = g_strsplit (g_strchomp (msg), "\n", -1);
      g_autoptr(json_object) doc = sm_report_recover_json (
        (const char *const *) (*msg ? lines : NULL));

      return sm_cli_print_document (doc) ? SM_EXIT_OK : SM_EXIT_FAILURE;
    }
    printf ("%s", *msg ? msg : "nothing to recover\n");
    return SM_EXIT_OK;
  }
  if ((exit_code = sm_cli_need_qmp (opt_qmp, "recover")) != SM_EXIT_OK)
    return exit_code;
  if (argc != 1)
    return sm_cli_usage ("recover: no arguments expected");
  if (!timeout_ok ("recover"))
    return SM_EXIT_USAGE;
  state_dir = opt_state_dir ? g_strdup (opt_state_dir)
                            : sm_state_default_dir ();
  st = sm_vm_state_open (state_dir, opt_qmp, &err);
  if (!st || !sm_vm_state_lock (st, &err)) {
    return sm_cli_fail ("recover", err, opt_qmp);
  }
  /* A dead QEMU is not an error here: recovery then works offline.  One
   * that does not answer (stopped, hung, or its monitor held by another
   * client) may still have the images open: that is an error. */
  qmp = sm_cli_connect (opt_qmp, opt_timeout, &err);
  if (g_error_matches (err, SM_ERROR, SM_ERROR_INTERRUPTED)) {
    return sm_cli_fail ("recover", err, opt_qmp);
  }
  if (!qmp && !g_error_matches (err, SM_ERROR, SM_ERROR_IO) &&
      !g_error_matches (err, SM_ERROR, SM_ERROR_NOT_FOUND) &&
      !g_error_matches (err, SM_ERROR, SM_ERROR_DISCONNECTED)) {
    /* The same error (its code, its object), with what it means here. */
    g_autoptr(GError) why = g_steal_pointer (&err);

    err = g_error_new (why->domain, why->code, "%s; QEMU may still be "
                       "running on the images, so nothing was done: run "
                       "recover again once it answers (or has exited)",
                       why->message);
    sm_error_set_object (err, sm_error_get_object (why));
    return sm_cli_fail ("recover", err, opt_qmp);
  }
  if (!qmp) {
    sm_cli_warning ("recover: %s; working on the files only", err->message);
    g_clear_error (&err);
  }
  if (opt_dest_never_ran && opt_dest_runs)
    return sm_cli_usage ("recover: --dest-never-ran and --dest-runs exclude "
                         "each other");
  sm_migrate_recover_set_dest_never_ran (opt_dest_never_ran);
  sm_migrate_recover_set_dest_runs (opt_dest_runs);
  ok = sm_lsm_recover (qmp, st, &done, &err);
  /* What was done first, then what is kept for the administrator (one
   * journal or record a line). */
  for (i = 0; !sm_cli_json && done && done[i]; i++)
    printf ("%s\n", done[i]);
  fflush (stdout);
  if (!ok) {
    g_auto(GStrv) problems = g_strsplit (err->message, "\n", -1);

    for (i = 0; problems[i]; i++)
      sm_cli_error ("recover: %s", problems[i]);
    if (sm_cli_json) {
      /* The lines above went to stderr; the document says it too. */
      g_autoptr(json_object) doc = sm_report_error_document (
        sm_report_error_json (err, opt_qmp));

      sm_cli_print_document (doc);
    }
    return sm_error_exit_status (err);
  }
  if (sm_cli_json) {
    g_autoptr(json_object) doc = sm_report_recover_json (
      (const char *const *) done);

    return sm_cli_print_document (doc) ? SM_EXIT_OK : SM_EXIT_FAILURE;
  }
  if (!done[0])
    printf ("nothing to recover\n");
  return SM_EXIT_OK;
}
