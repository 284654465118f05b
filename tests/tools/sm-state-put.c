/* sm-state-put — TEST TOOL, not installed: stores a <domainsnapshot> XML
 * file as a recorded snapshot of a VM through lib/state, so that the
 * metadata commands (list, dumpxml, delete, current) can be tested without
 * running `snapmig create` against a real QEMU.
 *
 *   sm-state-put [--current] STATE_DIR QMP_ADDRESS XML_FILE
 *
 * The document is parsed and validated as snapmig would, then saved under
 * its <name>; --current also makes it the current snapshot.  Exit 0 on
 * success, 1 with the library's message on failure, 2 on a usage error.
 */
#include <stdio.h>
#include <string.h>
#include <glib.h>

#include "state.h"

int
main (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(SmSnapshotDef) def = NULL;
  bool current = false;
  int i = 1;

  if (argc > 1 && strcmp (argv[1], "--current") == 0) {
    current = true;
    i++;
  }
  if (argc - i != 3) {
    fprintf (stderr,
             "usage: sm-state-put [--current] STATE_DIR QMP_ADDRESS XML_FILE\n");
    return 2;
  }
  def = sm_snapshot_parse_file (argv[i + 2], &err);
  if (def)
    st = sm_vm_state_open (argv[i], argv[i + 1], &err);
  if (!def || !st || !sm_vm_state_lock (st, &err) ||
      !sm_vm_state_save_snapshot (st, def, &err) ||
      (current && !sm_vm_state_set_current (st, def->name, &err))) {
    fprintf (stderr, "sm-state-put: %s\n", err->message);
    return 1;
  }
  return 0;
}
