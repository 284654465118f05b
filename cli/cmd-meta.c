/* snapmig list | dumpxml | delete | current — the snapshot metadata snapmig
 * keeps for a VM in its state directory (lib/state.h).  None of them talks
 * to QEMU: they work while the VM is stopped too.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <json-c/json.h>

#include "snapshot-json.h"
#include "error.h"
#include "state.h"

static char *opt_qmp;
static char *opt_state_dir;
static gboolean opt_metadata_only;

#define VM_ENTRIES \
  { "qmp", 0, 0, G_OPTION_ARG_FILENAME, &opt_qmp, \
    "The VM's QMP socket path or HOST:PORT; names the VM only, no " \
    "connection is made", "SOCKET" }, \
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_state_dir, \
    "snapmig's state directory (default: /var/lib/snapmig for root, else " \
    "$XDG_STATE_HOME/snapmig or ~/.local/state/snapmig)", "DIR" }

#define NO_CONNECTION \
  "\n\nReads and writes only snapmig's metadata in the state directory; " \
  "does not connect to QEMU, so the VM may be stopped."


/* Parses the command line, checks the positional argument count (MIN..MAX
 * after the command name) and opens the VM's state. NULL with *exit_code
 * set on failure (message printed). */
static SmVmState *
start (const char *command, const char *params, const char *description,
       const GOptionEntry *entries, int min_args, int max_args,
       int *argc, char ***argv, int *exit_code)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *default_dir = NULL;
  SmVmState *st;

  if (!sm_cli_parse (command, params, description, entries, argc, argv,
                     exit_code))
    return NULL;
  *exit_code = SM_EXIT_USAGE;
  if (!opt_qmp) {
    (void) sm_cli_usage ("%s: --qmp SOCKET is required (see 'snapmig %s "
                         "--help')", command, command);
    return NULL;
  }
  if (*argc - 1 < min_args) {
    (void) sm_cli_usage ("%s: missing snapshot name (see 'snapmig %s --help')",
                         command, command);
    return NULL;
  }
  if (*argc - 1 > max_args) {
    (void) sm_cli_usage ("%s: unexpected argument '%s' (see 'snapmig %s "
                         "--help')", command, (*argv)[max_args + 1], command);
    return NULL;
  }
  if (!opt_state_dir)
    default_dir = sm_state_default_dir ();
  st = sm_vm_state_open (opt_state_dir ? opt_state_dir : default_dir, opt_qmp,
                         &err);
  if (!st)
    *exit_code = sm_cli_fail (NULL, err, opt_qmp);
  return st;
}

/* "2026-11-22T03:04:05+01:00", local time; "-" when unknown. */
static char *
format_time (int64_t t)
{
  g_autoptr(GDateTime) dt = NULL;

  if (t < 0)
    return g_strdup ("-");
  dt = g_date_time_new_from_unix_local (t);
  if (!dt)
    return g_strdup ("-");
  return g_date_time_format (dt, "%Y-%m-%dT%H:%M:%S%:z");
}

/* "vda (mirror: /dst/vda.qcow2), vdb": the disks the snapshot covers. */
static char *
format_disks (const SmSnapshotDef *def)
{
  GString *s = g_string_new (NULL);
  guint i;

  for (i = 0; def->disks && i < def->disks->len; i++) {
    const SmSnapshotDisk *disk = g_ptr_array_index (def->disks, i);

    if (disk->snapshot == SM_SNAPSHOT_LOCATION_NO)
      continue;
    if (s->len)
      g_string_append (s, ", ");
    g_string_append (s, disk->name);
    if (disk->mirror_file)
      g_string_append_printf (s, " (mirror: %s)", disk->mirror_file);
  }
  if (!s->len)
    g_string_append (s, "-");
  return g_string_free (s, FALSE);
}

static int
flush_stdout (void)
{
  if (fflush (stdout) != 0 || ferror (stdout)) {
    sm_cli_error ("cannot write to standard output");
    return SM_EXIT_FAILURE;
  }
  return SM_EXIT_OK;
}

int
sm_cmd_list (int argc, char **argv)
{
  static const GOptionEntry entries[] = {
    VM_ENTRIES,
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(GError) err = NULL;
  g_auto(GStrv) names = NULL;
  g_autofree char *current = NULL;
  g_autoptr(GPtrArray) defs =
    g_ptr_array_new_with_free_func ((GDestroyNotify) sm_snapshot_def_free);
  g_autoptr(json_object) doc = NULL;
  int exit_code;
  int name_w = 0, time_w = 0, state_w = 0;
  guint i;

  st = start ("list", NULL,
              "List the snapshots snapmig recorded for a VM, oldest first: "
              "name, creation time, state, disks (with the destination of a "
              "disk move in progress); '*' marks the current snapshot."
              NO_CONNECTION,
              entries, 0, 0, &argc, &argv, &exit_code);
  if (!st)
    return exit_code;
  names = sm_vm_state_list_snapshots (st, &err);
  if (!names) {
    return sm_cli_fail (NULL, err, opt_qmp);
  }
  current = sm_vm_state_get_current (st, &err);
  if (err) {
    return sm_cli_fail (NULL, err, opt_qmp);
  }
  for (i = 0; names[i]; i++) {
    SmSnapshotDef *def = sm_vm_state_load_snapshot (st, names[i], &err);

    if (!def) {
      return sm_cli_fail (NULL, err, opt_qmp);
    }
    g_ptr_array_add (defs, def);
  }

  if (sm_cli_json) {
    doc = sm_snapshot_list_to_json (sm_vm_state_canonical_address (st), defs,
                                    current);
    return sm_cli_print_document (doc) ? SM_EXIT_OK : SM_EXIT_FAILURE;
  }

  for (i = 0; i < defs->len; i++) {
    const SmSnapshotDef *def = g_ptr_array_index (defs, i);
    g_autofree char *when = format_time (def->creation_time);

    name_w = MAX (name_w, (int) strlen (def->name));
    time_w = MAX (time_w, (int) strlen (when));
    state_w = MAX (state_w, (int) strlen (def->state ? def->state : "-"));
  }
  for (i = 0; i < defs->len; i++) {
    const SmSnapshotDef *def = g_ptr_array_index (defs, i);
    g_autofree char *when = format_time (def->creation_time);
    g_autofree char *disks = format_disks (def);

    printf ("%s %-*s  %-*s  %-*s  %s\n",
            g_strcmp0 (current, def->name) == 0 ? "*" : " ",
            name_w, def->name, time_w, when, state_w,
            def->state ? def->state : "-", disks);
  }
  return flush_stdout ();
}

int
sm_cmd_dumpxml (int argc, char **argv)
{
  static const GOptionEntry entries[] = {
    VM_ENTRIES,
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *xml = NULL;
  int exit_code;

  st = start ("dumpxml", "NAME",
              "Print the <domainsnapshot> XML snapmig stored for snapshot "
              "NAME of a VM." NO_CONNECTION,
              entries, 1, 1, &argc, &argv, &exit_code);
  if (!st)
    return exit_code;
  xml = sm_vm_state_read_snapshot_xml (st, argv[1], &err);
  if (!xml) {
    return sm_cli_fail (NULL, err, argv[1]);
  }
  if (sm_cli_json) {
    g_autoptr(json_object) doc = sm_snapshot_xml_to_json (argv[1], xml);

    return sm_cli_print_document (doc) ? SM_EXIT_OK : SM_EXIT_FAILURE;
  }
  fputs (xml, stdout);
  return flush_stdout ();
}

int
sm_cmd_delete (int argc, char **argv)
{
  static const GOptionEntry entries[] = {
    VM_ENTRIES,
    { "metadata-only", 0, 0, G_OPTION_ARG_NONE, &opt_metadata_only,
      "Delete the metadata even of a snapshot whose disk move is in "
      "progress (the move itself, QEMU's job and the images are left "
      "alone)", NULL },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(SmSnapshotDef) def = NULL;
  int exit_code;
  guint i;

  st = start ("delete", "NAME",
              "Delete snapmig's record of snapshot NAME of a VM (images are "
              "never touched).  A snapshot with a disk move in progress is "
              "refused: finish the move with 'snapmig pivot' or 'snapmig "
              "abort', or pass --metadata-only.  Deleting the current "
              "snapshot leaves the VM with none.  Takes the VM's lock."
              NO_CONNECTION,
              entries, 1, 1, &argc, &argv, &exit_code);
  if (!st)
    return exit_code;
  if (!sm_vm_state_lock (st, &err)) {
    return sm_cli_fail (NULL, err, argv[1]);
  }
  if (opt_metadata_only)
    /* Only to warn below about moves left running; an unreadable document
     * is deleted all the same. */
    def = sm_vm_state_load_snapshot (st, argv[1], NULL);
  if (!sm_vm_state_delete_snapshot_checked (st, argv[1], opt_metadata_only,
                                            &err)) {
    return sm_cli_fail (NULL, err, argv[1]);
  }
  for (i = 0; def && def->disks && i < def->disks->len; i++) {
    const SmSnapshotDisk *disk = g_ptr_array_index (def->disks, i);

    if (disk->mirror_file)
      sm_cli_warning ("snapshot '%s': the move of disk %s to %s is left as it "
                      "is in QEMU", argv[1], disk->name, disk->mirror_file);
  }
  if (sm_cli_json) {
    g_autoptr(json_object) doc = sm_snapshot_deleted_to_json (argv[1], def);

    return sm_cli_print_document (doc) ? SM_EXIT_OK : SM_EXIT_FAILURE;
  }
  return SM_EXIT_OK;
}

int
sm_cmd_current (int argc, char **argv)
{
  static const GOptionEntry entries[] = {
    VM_ENTRIES,
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *current = NULL;
  int exit_code;

  st = start ("current", "[NAME]",
              "Print the name of a VM's current snapshot, or with NAME make "
              "that recorded snapshot the current one (takes the VM's lock)."
              NO_CONNECTION,
              entries, 0, 1, &argc, &argv, &exit_code);
  if (!st)
    return exit_code;
  if (argc > 1) {
    if (!sm_vm_state_lock (st, &err) ||
        !sm_vm_state_set_current (st, argv[1], &err)) {
      return sm_cli_fail (NULL, err, argv[1]);
    }
    current = g_strdup (argv[1]);
  } else {
    current = sm_vm_state_get_current (st, &err);
    if (err)
      return sm_cli_fail (NULL, err, opt_qmp);
    if (!current) {
      sm_error_set_with_object (&err, SM_ERROR_NOT_FOUND, opt_qmp,
                                "VM %s has no current snapshot", opt_qmp);
      return sm_cli_fail (NULL, err, opt_qmp);
    }
  }
  if (sm_cli_json) {
    g_autoptr(json_object) doc = sm_snapshot_current_to_json (
      sm_vm_state_canonical_address (st), current);

    return sm_cli_print_document (doc) ? SM_EXIT_OK : SM_EXIT_FAILURE;
  }
  if (argc > 1)
    return SM_EXIT_OK;
  printf ("%s\n", current);
  return flush_stdout ();
}
