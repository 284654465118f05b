/* snapmig disks — a running VM's disks, backing chains and block jobs.
 *
 * Text output, one block per disk:
 *
 *   drive0
 *     node:          #block195
 *     format:        qcow2
 *     virtual size:  1.0 GiB (1073741824 bytes)
 *     active image:  /images/top.qcow2
 *     chain:
 *       /images/top.qcow2 (qcow2)
 *         /images/mid.qcow2 (qcow2)
 *           /images/base.qcow2 (qcow2)
 *     jobs:
 *       mirror drive0: running, 512.0 MiB of 1.0 GiB (50%)
 *     warning: ...
 *
 * --json prints the document described at sm_disks_to_json (lib/disks.h).
 */
#include "cli.h"

#include <stdio.h>

#include "disks.h"
#include "qmp.h"

static char *opt_qmp;
static int opt_timeout = 5;

static const GOptionEntry entries[] = {
  { "qmp", 0, 0, G_OPTION_ARG_FILENAME, &opt_qmp,
    "The VM's QMP socket path or HOST:PORT (or --connect and --domain)",
    "SOCKET" },
  SM_CLI_LIBVIRT_ENTRIES,
  SM_CLI_TIMEOUT_ENTRY (opt_timeout,
    "Give up when QEMU does not answer within SECONDS (default 5)"),
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static void
print_job (const SmBlockJob *job, const char *indent)
{
  g_autofree char *done = sm_cli_format_size (job->offset);
  g_autofree char *total = sm_cli_format_size (job->len);
  unsigned pct = job->len ? (unsigned) (job->offset * 100 / job->len) : 0;

  printf ("%s%s %s: %s, %s of %s (%u%%)", indent, job->type, job->id,
          job->status, done, total, pct);
  if (job->speed > 0) {
    g_autofree char *speed = sm_cli_format_size ((guint64) job->speed);

    printf (", limit %s/s", speed);
  }
  printf ("\n");
}

static void
print_disk (const SmDisk *disk)
{
  g_autofree char *size = sm_cli_format_size (disk->virtual_size);
  guint i;

  printf ("%s\n", disk->device[0] ? disk->device : "(no drive id)");
  if (disk->qdev)
    printf ("  device:        %s\n", disk->qdev);
  if (!disk->inserted) {
    printf ("  (no medium)\n");
    return;
  }
  printf ("  node:          %s\n", disk->node_name ? disk->node_name : "-");
  printf ("  format:        %s\n", disk->format ? disk->format : "-");
  printf ("  virtual size:  %s (%" G_GUINT64_FORMAT " bytes)\n", size,
          (guint64) disk->virtual_size);
  printf ("  active image:  %s\n", disk->file ? disk->file : "-");
  if (disk->read_only)
    printf ("  read-only:     yes\n");
  printf ("  chain:\n");
  for (i = 0; i < disk->chain->len; i++) {
    const SmDiskLayer *l = disk->chain->pdata[i];

    printf ("%*s%s (%s)\n", 4 + 2 * (int) i, "", l->file,
            l->format ? l->format : "?");
  }
  if (disk->jobs->len == 0) {
    printf ("  jobs:          none\n");
  } else {
    printf ("  jobs:\n");
    for (i = 0; i < disk->jobs->len; i++)
      print_job (disk->jobs->pdata[i], "    ");
  }
  for (i = 0; i < disk->warnings->len; i++)
    printf ("  warning: %s\n", (const char *) disk->warnings->pdata[i]);
}

int
sm_cmd_disks (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmVmAccess) access = NULL;
  g_autoptr(SmDiskList) list = NULL;
  g_autofree char *label = NULL;
  SmOpTarget t = { .wait_timeout_ms = -1 };
  int exit_code;
  guint i;

  if (!sm_cli_parse ("disks", NULL,
                     "List a running VM's disks: the active image, the backing "
                     "chain QEMU has open (checked against the image headers "
                     "on disk) and the block jobs running on each.",
                     entries, &argc, &argv, &exit_code))
    return exit_code;
  if (argc > 1)
    return sm_cli_usage ("disks: unexpected argument '%s' (see 'snapmig disks "
                         "--help')", argv[1]);
  if (!sm_cli_vm_target ("disks", opt_qmp, &t, &exit_code))
    return exit_code;
  if (opt_timeout == 0)
    return sm_cli_usage ("disks: --timeout must be a positive number of "
                         "seconds");
  if (!sm_cli_timeout_ok ("disks", opt_timeout))
    return SM_EXIT_USAGE;

  t.reply_timeout_s = sm_cli_timeout_s (opt_timeout);
  label = sm_op_target_label (&t);
  access = sm_op_access (&t, &err);
  if (!access)
    return sm_cli_fail (NULL, err, label);
  list = sm_disks_query_access (access, &err);
  if (!list)
    return sm_cli_fail (NULL, err, label);

  if (sm_cli_json) {
    g_autoptr(json_object) doc = sm_disks_to_json (list);

    printf ("%s\n", json_object_to_json_string_ext (doc,
                                                    JSON_C_TO_STRING_PRETTY |
                                                    JSON_C_TO_STRING_SPACED |
                                                    JSON_C_TO_STRING_NOSLASHESCAPE));
    return SM_EXIT_OK;
  }

  for (i = 0; i < list->disks->len; i++) {
    if (i > 0)
      printf ("\n");
    print_disk (list->disks->pdata[i]);
  }
  if (list->other_jobs->len > 0) {
    printf ("\nother jobs:\n");
    for (i = 0; i < list->other_jobs->len; i++)
      print_job (list->other_jobs->pdata[i], "  ");
  }
  return SM_EXIT_OK;
}
