/* snapmig validate — check storage domains for broken, unsafe and left-over
 * images (lib/validate.h says which files count as images and how backing
 * names are resolved).
 *
 *   snapmig validate DIR... [--json] [--qmp SOCKET]... [--strict]
 *                    [--state-dir DIR]
 *
 * Text output: problems first, errors then warnings then infos, each
 *
 *   error: /dom/a.qcow2: backing file '../../x.img' is outside ...
 *     fix: do not let QEMU open this image: ...
 *
 * then one summary line:
 *
 *   N images, M chains, E errors, W warnings, I infos
 *
 * --json prints one document (keys stable; absent values are null):
 *
 *   { "domains": [ "DIR", ... ],
 *     "summary": { "images": N, "chains": N, "errors": N, "warnings": N,
 *                  "infos": N, "clean": true, "strict": false,
 *                  "leftovers-checked": false },
 *     "findings": [ { "severity": "error" | "warning" | "info",
 *                     "code": "backing-escapes", "file": PATH | null,
 *                     "message": "...", "fix": "..." | null,
 *                     "vm": SOCKET | null, "disk": "drive0" | null } ],
 *     "images": [ { "path": PATH, "domain": DIR, "format": "qcow2" | "raw",
 *                   "block-device": false, "virtual-size": N,
 *                   "file-size": N, "backing-name": NAME | null,
 *                   "backing-format": FMT | null,
 *                   "backing-path": PATH | null, "header-ok": true,
 *                   "used-by": [ "image PATH" | "vm SOCKET DISK" |
 *                                "snapshot VMKEY/NAME" | "move VMKEY/NAME" |
 *                                "operation JOURNAL" ] } ],
 *     "chains": [ { "top": PATH, "layers": [ PATH, ... ],
 *                   "complete": true } ],
 *     "vm-disks": [ { "vm": SOCKET, "disk": "drive0",
 *                     "layers": [ FILE, ... ], "domain": DIR | null,
 *                     "problem": "..." | null } ] }
 *
 * Finding codes are listed at the top of lib/validate.c.
 * Exit status: 0 clean (warnings allowed unless --strict), 1 problems found,
 * 2 could not run (missing domain, bad option, unreachable VM).
 */
#include "cli.h"

#include <stdio.h>

#include "ops.h"
#include "validate.h"

static gboolean opt_strict;
static char **opt_qmp;
static char *opt_state_dir;
static int opt_timeout;

static const GOptionEntry entries[] = {
  { "qmp", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_qmp,
    "A running VM's QMP socket or HOST:PORT; its open images count as used "
    "and leftovers are looked for (repeatable)", "SOCKET" },
  SM_CLI_LIBVIRT_ENTRIES,
  { "strict", 0, 0, G_OPTION_ARG_NONE, &opt_strict,
    "Count warnings as problems (exit 1)", NULL },
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_state_dir,
    "snapmig's state directory, where the snapshots and moves that keep "
    "images in use and the journals of interrupted operations are recorded "
    "(default: /var/lib/snapmig for root, else "
    "$XDG_STATE_HOME/snapmig)", "DIR" },
  SM_CLI_TIMEOUT_ENTRY (opt_timeout,
    "Give up when a VM given with --qmp does not answer within SECONDS "
    "(default 30)"),
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static void
print_text (const SmValidateReport *r)
{
  guint i;

  for (i = 0; i < r->findings->len; i++) {
    const SmFinding *f = r->findings->pdata[i];

    printf ("%s: %s\n", sm_severity_to_string (f->severity), f->message);
    if (f->fix)
      printf ("  fix: %s\n", f->fix);
  }
  printf ("%u images, %u chains, %u errors, %u warnings, %u infos\n",
          r->images->len, r->chains->len, r->n_errors, r->n_warnings,
          r->n_infos);
}

int
sm_cmd_validate (int argc, char **argv)
{
  g_autoptr(SmValidateReport) report = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(GArray) vms = g_array_new (FALSE, FALSE, sizeof (SmOpTarget));
  g_autoptr(GPtrArray) domains = g_ptr_array_new ();
  char **p;
  int rc, i;

  if (!sm_cli_parse ("validate", "DIR...",
                     "Check storage domains (directory trees of qcow2 and raw "
                     "images) for broken headers, backing files that escape "
                     "the domains, unsafe chains and leftovers.  Never "
                     "writes.  Exit status: 0 clean, 1 problems found, else "
                     "the error's (snapmig(1), EXIT STATUS).", entries,
                     &argc, &argv, &rc))
    return rc;
  if (argc < 2)
    return sm_cli_usage ("validate: no storage domain given (see 'snapmig "
                         "validate --help')");
  if (!sm_cli_timeout_ok ("validate", opt_timeout))
    return SM_EXIT_USAGE;

  for (p = opt_qmp; p && *p; p++) {
    SmOpTarget t = { .address = *p, .state_dir = opt_state_dir,
                     .reply_timeout_s = sm_cli_timeout_s (opt_timeout),
                     .wait_timeout_ms = -1 };

    g_array_append_val (vms, t);
  }
  /* A libvirt domain besides the --qmp VMs: its open images count too. */
  if (sm_cli_opt_connect || sm_cli_opt_domain) {
    SmOpTarget t = { .state_dir = opt_state_dir,
                     .reply_timeout_s = sm_cli_timeout_s (opt_timeout),
                     .wait_timeout_ms = -1 };

    if (!sm_cli_vm_target ("validate", NULL, &t, &rc))
      return rc;
    g_array_append_val (vms, t);
  }
  for (i = 1; i < argc; i++)
    g_ptr_array_add (domains, argv[i]);
  g_ptr_array_add (domains, NULL);
  report = sm_op_validate ((const char *const *) domains->pdata,
                           (const SmOpTarget *) vms->data, vms->len,
                           opt_state_dir, &err);
  if (!report)
    return sm_cli_fail ("validate", err, vms->len ? NULL : argv[1]);

  if (sm_cli_json) {
    g_autoptr(json_object) doc = sm_validate_report_to_json (report,
                                                             opt_strict);

    if (!sm_cli_print_document (doc))
      return SM_EXIT_FAILURE;
  } else {
    print_text (report);
  }
  return sm_validate_report_clean (report, opt_strict) ? SM_EXIT_OK
                                                       : SM_EXIT_FAILURE;
}
