/* vm-access — drives a backend of lib/vm-access.h for the shell tests
 * (tests/integration/test-libvirt-access.sh, test-vm-access-qmp.sh), one
 * entry per operation, until the commands take --connect.
 *
 *   vm-access URI DOMAIN OP [ARGS] [-- OP [ARGS]]...    libvirt's domain
 *   vm-access qmp:SOCKET - OP [ARGS] [-- OP [ARGS]]...   a QMP monitor
 *
 *   view                        the VM view: "disk TARGET FORMAT FILE",
 *                               "layer TARGET I FORMAT FILE" and
 *                               "job ID TYPE STATUS OFFSET LEN" lines
 *   state                       running, paused or other
 *   pause | resume
 *   snapshot DISK=FILE...       one snapshot onto pre-created qcow2 tops
 *   mirror DISK TARGET FMT JOB  block copy into the pre-created TARGET
 *   stream DISK BASE|- JOB      block pull (into the top) down to BASE
 *   commit DISK BASE|- JOB      active block commit of the top (into BASE)
 *   complete JOB | cancel JOB   pivot, or cancel
 *   wait-ready JOB | wait-gone JOB   (30 s at most)
 *   wait-event MS               the next event: "event JOB|- WHAT"
 *
 * Operations after `--` run on the same access (job ids given to one are
 * known to the next).  VM_ACCESS_TIMEOUT_MS in the environment sets the
 * access's timeout (default 30 s; the waits keep theirs).  Exit status: 0, 1 on an error (`vm-access:
 * error: MESSAGE` on stderr), 2 on bad usage, 77 when snapmig was built
 * without libvirt.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm-access.h"

#define TIMEOUT_MS 30000

static int
usage (void)
{
  fprintf (stderr, "usage: vm-access URI|qmp:SOCKET DOMAIN OP [ARGS] "
           "[-- OP [ARGS]]...\n");
  return 2;
}

static void
print_view (const SmBlockVm *view)
{
  for (guint i = 0; i < view->disks->len; i++) {
    SmBlockDisk *d = view->disks->pdata[i];

    printf ("disk %s %s %s\n", d->device, d->format ? d->format : "-",
            d->file ? d->file : "-");
    for (guint k = 0; k < d->chain->len; k++) {
      SmBlockLayer *l = d->chain->pdata[k];

      printf ("layer %s %u %s %s\n", d->device, k, l->format ? l->format : "-",
              l->filename);
    }
  }
  for (guint i = 0; i < view->jobs->len; i++) {
    SmBlockJob *j = view->jobs->pdata[i];

    printf ("job %s %s %s %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT "\n",
            j->id, j->type, j->status, j->offset, j->len);
  }
}

static bool
do_snapshot (SmVmAccess *vm, int argc, char **argv, GError **error)
{
  g_autofree SmVmSnapshotDisk *disks = g_new0 (SmVmSnapshotDisk, argc);
  g_auto(GStrv) parts = g_new0 (char *, argc + 1);

  for (int i = 0; i < argc; i++) {
    char *eq = strchr (argv[i], '=');

    if (!eq) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "snapshot: %s is not DISK=FILE", argv[i]);
      return false;
    }
    parts[i] = g_strndup (argv[i], eq - argv[i]);
    disks[i].disk = parts[i];
    disks[i].new_top = eq + 1;
    disks[i].format = "qcow2";
  }
  return vm->ops->snapshot (vm, disks, argc, error);
}

static const char *
opt (const char *arg)
{
  return strcmp (arg, "-") == 0 ? NULL : arg;
}

/* Runs one operation (ARGV[0], ARGC words); -1 on bad usage. */
static int
run_op (SmVmAccess *vm, int argc, char **argv, GError **error)
{
  const char *op = argv[0];
  SmVmRunState st;

#define NEED(n) do { if (argc != (n) + 1) return -1; } while (0)
  if (strcmp (op, "view") == 0) {
    g_autoptr(SmBlockVm) view = NULL;

    NEED (0);
    view = vm->ops->query_view (vm, error);
    if (view)
      print_view (view);
    return view != NULL;
  }
  if (strcmp (op, "state") == 0) {
    NEED (0);
    if (!vm->ops->query_run_state (vm, &st, error))
      return 0;
    puts (st == SM_VM_RUNNING ? "running" : st == SM_VM_PAUSED ? "paused"
          : "other");
    return 1;
  }
  if (strcmp (op, "pause") == 0 || strcmp (op, "resume") == 0) {
    NEED (0);
    return op[0] == 'p' ? vm->ops->pause (vm, error)
      : vm->ops->resume (vm, error);
  }
  if (strcmp (op, "snapshot") == 0)
    return argc < 2 ? -1 : do_snapshot (vm, argc - 1, argv + 1, error);
  if (strcmp (op, "mirror") == 0) {
    NEED (4);
    return vm->ops->mirror (vm, argv[1], argv[2], argv[3], argv[4], false,
                            error);
  }
  if (strcmp (op, "stream") == 0) {
    NEED (3);
    return vm->ops->stream (vm, argv[1], opt (argv[2]), NULL, 0, argv[3],
                            error);
  }
  if (strcmp (op, "commit") == 0) {
    NEED (3);
    return vm->ops->commit (vm, argv[1], opt (argv[2]), argv[3], error);
  }
  if (strcmp (op, "complete") == 0 || strcmp (op, "cancel") == 0) {
    NEED (1);
    return strcmp (op, "complete") == 0
      ? vm->ops->job_complete (vm, argv[1], error)
      : vm->ops->job_cancel (vm, argv[1], false, error);
  }
  if (strcmp (op, "wait-ready") == 0 || strcmp (op, "wait-gone") == 0) {
    NEED (1);
    return sm_vm_access_wait_job (vm, argv[1], strcmp (op, "wait-ready") == 0
                                  ? SM_VM_JOB_READY : SM_VM_JOB_GONE,
                                  TIMEOUT_MS, error);
  }
  if (strcmp (op, "wait-event") == 0) {
    g_autoptr(SmVmEvent) event = NULL;

    NEED (1);
    event = vm->ops->wait_event (vm, atoi (argv[1]), error);
    if (event)
      printf ("event %s %s\n", event->job ? event->job : "-", event->what);
    return event != NULL;
  }
#undef NEED
  return -1;
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmVmAccess) vm = NULL;
  int i, start, r, timeout_ms = TIMEOUT_MS;

  if (argc < 4)
    return usage ();
  if (g_getenv ("VM_ACCESS_TIMEOUT_MS"))
    timeout_ms = atoi (g_getenv ("VM_ACCESS_TIMEOUT_MS"));
  vm = g_str_has_prefix (argv[1], "qmp:")
    ? sm_vm_access_open_qmp (argv[1] + 4, timeout_ms, &err)
    : sm_vm_access_open_libvirt (argv[1], argv[2], timeout_ms, &err);
  if (!vm) {
    fprintf (stderr, "vm-access: error: %s\n", err->message);
    return g_error_matches (err, SM_ERROR, SM_ERROR_UNSUPPORTED) ? 77 : 1;
  }
  for (start = i = 3; i <= argc; i++) {
    if (i < argc && strcmp (argv[i], "--") != 0)
      continue;
    if (i == start)
      return usage ();
    r = run_op (vm, i - start, argv + start, &err);
    if (r < 0)
      return usage ();
    if (r == 0) {
      fprintf (stderr, "vm-access: error: %s: %s\n", argv[start],
               err->message);
      return 1;
    }
    fflush (stdout);
    start = i + 1;
  }
  return 0;
}
