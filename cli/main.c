/* snapmig(1) — command dispatch. */
#include "cli.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "helper.h"
#include "interrupt.h"
#include "snapmig.h"

static const SmCliCommand commands[] = {
  { "disks", "--qmp SOCKET [--json]",
    "List a running VM's disks, their backing chains and block jobs",
    sm_cmd_disks },
  { "check-xml", "FILE...",
    "Validate snapshot and migration-cookie XML documents",
    sm_cmd_check_xml },
  { "list", "--qmp SOCKET [--state-dir DIR] [--json]",
    "List the snapshots snapmig recorded for a VM",
    sm_cmd_list },
  { "dumpxml", "--qmp SOCKET [--state-dir DIR] NAME",
    "Print a recorded snapshot's XML",
    sm_cmd_dumpxml },
  { "delete", "--qmp SOCKET [--state-dir DIR] [--metadata-only] NAME",
    "Delete snapmig's record of a snapshot",
    sm_cmd_delete },
  { "current", "--qmp SOCKET [--state-dir DIR] [NAME]",
    "Print or set a VM's current snapshot",
    sm_cmd_current },
  { "rebase",
    "--qmp SOCKET [--base IMAGE] [--bandwidth RATE] [--timeout SECONDS] "
    "[--state-dir DIR] [--json] [--dry-run] DISK",
    "Merge a running disk's backing layers above a base into its top",
    sm_cmd_rebase },
  { "validate", "DIR... [--json] [--qmp SOCKET]... [--timeout SECONDS] [--strict] "
    "[--state-dir DIR]",
    "Check storage domains for broken, unsafe and left-over images",
    sm_cmd_validate },
  { "create",
    "--qmp SOCKET [--name NAME] [--diskspec DISK[,file=PATH][,mirror=PATH]"
    "[,snapshot=no]]... [--mirror] [--mirror-domain DIR] [--atomic] "
    "[--reuse-external] [--disk-only] [--no-metadata] [--bandwidth RATE] "
    "[--copy-mode MODE] [--wait] [--timeout SECONDS] [--state-dir DIR] "
    "[--json] [--dry-run] [FILE]",
    "Take a disk snapshot, mirroring new tops to a storage domain",
    sm_cmd_create },
  { "pivot",
    "--qmp SOCKET [--delete-source] [--timeout SECONDS] [--state-dir DIR] "
    "[--json] [--dry-run] NAME",
    "Switch a snapshot's mirrored disks to their destination",
    sm_cmd_pivot },
  { "abort",
    "--qmp SOCKET [--timeout SECONDS] [--state-dir DIR] [--json] [--dry-run] "
    "NAME",
    "Cancel a snapshot's mirrors and remove its destination files",
    sm_cmd_abort },
  { "status", "--qmp SOCKET [--timeout SECONDS] [--state-dir DIR] [--json] [NAME]",
    "Show a snapshot's mirrors and background copies",
    sm_cmd_status },
  { "recover", "--qmp SOCKET [--timeout SECONDS] [--state-dir DIR]",
    "Roll back or report operations a crash interrupted",
    sm_cmd_recover },
  { "migrate",
    "--qmp SOCKET --dest-domain DIR [--dest-cmd CMD] [--dest-host ADDR] "
    "[--copy-storage-all|--copy-storage-inc|--flatten] [--migrate-disks LIST] "
    "[--bandwidth RATE] [--postcopy|--postcopy-after-precopy] "
    "[--parallel] [--json] [--dry-run] ...",
    "Move the running VM with its local disks to another host",
    sm_cmd_migrate },
  { "migrate-begin", "--qmp SOCKET [options of migrate] > COOKIE",
    "Source: plan, snapshot, export the lower layers", sm_cmd_migrate_begin },
  { "migrate-prepare", "--dest-domain DIR [--dest-run-dir DIR] < COOKIE > COOKIE",
    "Destination: pre-create the disks, start QEMU and its NBD server",
    sm_cmd_migrate_prepare },
  { "migrate-perform", "--qmp SOCKET < COOKIE > COOKIE",
    "Source: copy the disks, migrate the VM's state", sm_cmd_migrate_perform },
  { "migrate-finish", "[--cancel] < COOKIE > COOKIE",
    "Destination: complete (or cancel) the incoming migration",
    sm_cmd_migrate_finish },
  { "migrate-confirm", "--qmp SOCKET [--failed] < COOKIE",
    "Source: quit after success, roll back after failure",
    sm_cmd_migrate_confirm },
  { "migrate-start-postcopy",
    "--qmp SOCKET [--state-dir DIR] [--timeout SECONDS] [--json]",
    "Switch a running migration (migrate --postcopy) to post-copy",
    sm_cmd_migrate_start_postcopy },
  { "migrate-recover",
    "--qmp SOCKET [--dest-cmd CMD] [--dest-state-dir DIR] "
    "[--stall-timeout S] [--recover-timeout S] [--timeout S] [--json] ... | "
    "--incoming [--state-dir DIR] < COOKIE > COOKIE",
    "Recover a post-copy whose link failed (--incoming: destination side)",
    sm_cmd_migrate_recover },
  { "relay", "--id ID [--hold] [--state-dir DIR] [destination options]",
    "Internal helper of migrate --tunnel: the destination's end of the "
    "tunnel", sm_cmd_relay },
  /* hidden (no summary): migrate --tunnel starts it */
  { "tunnel", "--id ID --local-dir DIR [--link-timeout-ms MS] "
    "[--dest-opt OPT]... -- DEST-COMMAND...", NULL, sm_cmd_tunnel },
  /* hidden: create starts it (lib/layer-copy.c) */
  { "copy-worker", "--status FILE --ready-fd FD", NULL, sm_cmd_copy_worker },
};

static void
usage (FILE *fp)
{
  size_t i;

  fprintf (fp,
           "Usage: snapmig COMMAND [OPTIONS] [ARGS]\n"
           "       snapmig help [COMMAND] | --version\n"
           "       snapmig COMMAND --help | --version\n\n"
           "Move the disks of a running QEMU VM between storage domains, over QMP.\n\n"
           "Commands:\n");
  for (i = 0; i < G_N_ELEMENTS (commands); i++)
    if (commands[i].summary)
      fprintf (fp, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf (fp, "\nRun 'snapmig COMMAND --help' for a command's options; "
           "see snapmig(1).\n");
}

static const SmCliCommand *
find_command (const char *name)
{
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

/* Levenshtein distance between A and B (insert, delete, substitute). */
static size_t
edit_distance (const char *a, const char *b)
{
  size_t la = strlen (a), lb = strlen (b), i, j;
  g_autofree size_t *row = g_new (size_t, lb + 1);

  for (j = 0; j <= lb; j++)
    row[j] = j;
  for (i = 1; i <= la; i++) {
    size_t diag = row[0];

    row[0] = i;
    for (j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);

      best = MIN (best, up + 1);
      best = MIN (best, row[j - 1] + 1);
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* The listed command closest to NAME, or NULL when none is close: at most
 * two edits away (a typo), or NAME is the start of it ("mig" for migrate;
 * the shortest such). */
static const char *
closest_command (const char *name)
{
  const char *best = NULL;
  size_t best_d = 3, i;

  for (i = 0; i < G_N_ELEMENTS (commands); i++) {
    size_t d;

    if (!commands[i].summary)
      continue;   /* hidden helpers are not offered */
    d = edit_distance (name, commands[i].name);
    if (d < best_d) {
      best = commands[i].name;
      best_d = d;
    }
  }
  if (best || !*name)
    return best;
  for (i = 0; i < G_N_ELEMENTS (commands); i++)
    if (commands[i].summary && g_str_has_prefix (commands[i].name, name) &&
        (!best || strlen (commands[i].name) < strlen (best)))
      best = commands[i].name;
  return best;
}

/* `snapmig: error: unknown command 'NAME'` with the closest command, if
 * any, and where to find the list. */
static int
unknown_command (const char *name)
{
  const char *near = closest_command (name);

  if (near)
    return sm_cli_usage ("unknown command '%s'; did you mean '%s'? (see "
                         "'snapmig help')", name, near);
  return sm_cli_usage ("unknown command '%s' (see 'snapmig help')", name);
}

int
main (int argc, char **argv)
{
  const SmCliCommand *cmd;

  /* GOption's help is translated and written in the user's charset (a
   * UTF-8 locale gets "[OPTION…]", the C locale "[OPTION?]").  Numbers
   * stay in the C locale: the JSON we print and the values we parse
   * (--bandwidth 1.5M) use a decimal point whatever LC_NUMERIC says. */
  setlocale (LC_ALL, "");
  setlocale (LC_NUMERIC, "C");

  if (argc < 2) {
    usage (stderr);
    return SM_EXIT_USAGE;
  }
  if (strcmp (argv[1], "--version") == 0 || strcmp (argv[1], "version") == 0) {
    printf ("snapmig %s\n", SM_VERSION);
    return SM_EXIT_OK;
  }
  if (strcmp (argv[1], "help") == 0 || strcmp (argv[1], "--help") == 0 ||
      strcmp (argv[1], "-h") == 0) {
    if (argc > 2 && strcmp (argv[1], "help") == 0) {
      char *sub[] = { argv[2], (char *) "--help", NULL };

      cmd = find_command (argv[2]);
      if (!cmd)
        return unknown_command (argv[2]);
      return cmd->run (2, sub);
    }
    usage (stdout);
    return SM_EXIT_OK;
  }
  sm_cli_begin (argv[1], argc - 1, argv + 1);
  cmd = find_command (argv[1]);
  if (!cmd)
    return unknown_command (argv[1]);
  /* Ctrl-C, SIGTERM, SIGHUP: the library's waits end with an error and
   * the command leaves through its error path (a paused guest resumed). */
  sm_interrupt_install ();
  /* The library's helper processes (the copy worker, migrate's tunnel)
   * run this very binary. */
  {
    g_autofree char *self = g_file_read_link ("/proc/self/exe", NULL);

    sm_helper_set_path (self);
  }
  return cmd->run (argc - 1, argv + 1);
}
