/* layer-copy — snapmig's copy worker alone on given files, for measuring
 * it against bench/stream-copy on the same bytes (no QEMU, no plan):
 *
 *   layer-copy [--bandwidth BYTES-PER-S] SRC DST [SRC DST...]
 *
 * Creates each DST (empty) unless it exists, starts the detached worker
 * (sm_copy_worker_spawn) on raw copies SRC -> DST, polls its status until
 * it ends, and prints the wall time in seconds.  Exit 1 when the copy
 * failed.  Run it under bench/peak-rss (the worker is re-parented there)
 * or bench/meminfo-peak.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>

#include "helper.h"
#include "layer-copy.h"

int
main (int argc, char **argv)
{
  g_autoptr(GPtrArray) copies = g_ptr_array_new_with_free_func (
    (GDestroyNotify) sm_layer_copy_free);
  g_autofree char *dir = g_dir_make_tmp ("layer-copy.XXXXXX", NULL);
  g_autofree char *status = NULL;
  g_autoptr(GError) err = NULL;
  uint64_t bandwidth = 0;
  gint64 start;
  pid_t pid;
  int i = 1;

  if (i + 1 < argc && strcmp (argv[i], "--bandwidth") == 0) {
    bandwidth = g_ascii_strtoull (argv[i + 1], NULL, 10);
    i += 2;
  }
  if (argc - i < 2 || (argc - i) % 2 || !dir) {
    fprintf (stderr, "usage: layer-copy [--bandwidth N] SRC DST [SRC DST...]\n");
    return 2;
  }
  status = g_build_filename (dir, "copy.json", NULL);
  for (; i + 1 < argc; i += 2) {
    int fd = open (argv[i + 1], O_WRONLY | O_CREAT, 0644);

    if (fd < 0) {
      perror (argv[i + 1]);
      return 1;
    }
    close (fd);
    g_ptr_array_add (copies, sm_layer_copy_new ("bench", argv[i], argv[i + 1],
                                                SM_IMAGE_FORMAT_RAW, NULL,
                                                SM_IMAGE_FORMAT_LAST));
  }
  /* The worker is `snapmig copy-worker`: this tree's (bench/../cli). */
  {
    g_autofree char *self = g_file_read_link ("/proc/self/exe", NULL);
    g_autofree char *here = self ? g_path_get_dirname (self) : NULL;
    g_autofree char *snapmig = here ? g_build_filename (here, "..", "cli",
                                                       "snapmig", NULL)
                                   : NULL;

    if (!g_getenv ("SNAPMIG_HELPER"))
      sm_helper_set_path (snapmig);
  }
  start = g_get_monotonic_time ();
  if (!sm_copy_worker_spawn (copies, bandwidth, status, &pid, &err)) {
    fprintf (stderr, "layer-copy: %s\n", err->message);
    return 1;
  }
  for (;;) {
    g_autoptr(SmCopyStatus) st = sm_copy_status_load (status, NULL);

    if (st && st->state == SM_COPY_DONE)
      break;
    if (st && st->state == SM_COPY_FAILED) {
      fprintf (stderr, "layer-copy: the copy failed\n");
      return 1;
    }
    g_usleep (2000);
  }
  printf ("%.3f\n", (double) (g_get_monotonic_time () - start) / 1e6);
  unlink (status);
  rmdir (dir);
  return 0;
}
