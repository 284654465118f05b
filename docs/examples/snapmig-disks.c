/* snapmig-disks — list a running VM's disks and their backing chains
 * through libsnapmig (include/snapmig.h).
 *
 *   cc -o snapmig-disks snapmig-disks.c $(pkg-config --cflags --libs snapmig)
 *   ./snapmig-disks /run/vm1.qmp           one block per disk
 *   ./snapmig-disks --json /run/vm1.qmp    the document of `snapmig disks --json`
 *
 * Output, one block per disk (the chain top first):
 *
 *   drive0 qcow2 1073741824 /images/top.qcow2
 *     /images/top.qcow2 qcow2
 *     /images/base.qcow2 qcow2
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <snapmig.h>

static int
fail (snapmig_error *err)
{
  fprintf (stderr, "snapmig-disks: error: %s (%s)\n",
           snapmig_error_message (err), snapmig_error_code_name (err));
  snapmig_error_free (err);
  return 1;
}

int
main (int argc, char **argv)
{
  snapmig_error *err = NULL;
  snapmig_vm *vm;
  snapmig_disks *disks;
  int json = argc == 3 && strcmp (argv[1], "--json") == 0;
  size_t i, l;

  if (argc != 2 + json) {
    fprintf (stderr, "usage: snapmig-disks [--json] QMP_SOCKET\n");
    return 2;
  }
  vm = snapmig_vm_new (argv[1 + json], NULL, 0, &err);
  if (!vm)
    return fail (err);
  disks = snapmig_disks_query (vm, &err);
  snapmig_vm_free (vm);
  if (!disks)
    return fail (err);

  if (json) {
    char *doc = snapmig_disks_json (disks);

    printf ("%s\n", doc);
    free (doc);
  }
  for (i = 0; !json && i < snapmig_disks_count (disks); i++) {
    const char *file = snapmig_disk_file (disks, i);
    const char *format = snapmig_disk_format (disks, i);

    printf ("%s %s %" PRIu64 " %s\n", snapmig_disk_name (disks, i),
            format ? format : "-", snapmig_disk_virtual_size (disks, i),
            file ? file : "-");
    for (l = 0; l < snapmig_disk_chain_length (disks, i); l++)
      printf ("  %s %s\n", snapmig_disk_layer_file (disks, i, l),
              snapmig_disk_layer_format (disks, i, l));
  }
  snapmig_disks_free (disks);
  return 0;
}
