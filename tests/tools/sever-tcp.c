/* sever-tcp — TEST TOOL, not installed: cuts the TCP connections of a
 * process to HOST:PORT (shutdown through a duplicate of its descriptor,
 * lib/qemu-proc.h's sm_proc_sever_tcp), the way a stream that broke looks
 * to both ends: test-migrate-postcopy.sh cuts the source QEMU's migration
 * stream with it during post-copy.
 *
 *   sever-tcp PID HOST PORT
 *
 * Prints "severed N" (the connections shut down).  Exit 0 when one or
 * more were, 1 when none was or the kernel refused (the message on
 * stderr), 2 on a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <glib.h>

#include "qemu-proc.h"

int
main (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  char *end = NULL;
  long pid, port;
  int n = 0;

  if (argc != 4) {
    fprintf (stderr, "usage: sever-tcp PID HOST PORT\n");
    return 2;
  }
  pid = strtol (argv[1], &end, 10);
  if (*argv[1] == '\0' || *end != '\0' || pid <= 0) {
    fprintf (stderr, "sever-tcp: %s: not a PID\n", argv[1]);
    return 2;
  }
  port = strtol (argv[3], &end, 10);
  if (*argv[3] == '\0' || *end != '\0' || port <= 0 || port > 65535) {
    fprintf (stderr, "sever-tcp: %s: not a TCP port\n", argv[3]);
    return 2;
  }
  if (!sm_proc_sever_tcp ((pid_t) pid, argv[2], (int) port, &n, &err)) {
    fprintf (stderr, "sever-tcp: %s\n", err->message);
    return 1;
  }
  printf ("severed %d\n", n);
  return n > 0 ? 0 : 1;
}
