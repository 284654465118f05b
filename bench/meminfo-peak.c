/* meminfo-peak — runs a command and reports the largest amount of dirty
 * page cache the system held meanwhile: Dirty + Writeback of /proc/meminfo,
 * sampled every 5 ms.  System-wide: whatever else runs on the machine
 * counts too, so the value before the command is reported as well.
 *
 *   meminfo-peak COMMAND [ARGS...]
 *
 * The command's stdin, stdout and stderr are its own; afterwards one line
 * `dirty-peak-kib N before-kib M` goes to stderr (bench/lsm.sh parses it).
 * Exits with the command's status.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>

static long
field_kib (const char *text, const char *name)
{
  const char *p = strstr (text, name);

  return p ? strtol (p + strlen (name), NULL, 10) : 0;
}

/* Dirty + Writeback now, in KiB. */
static long
dirty_kib (void)
{
  g_autofree char *text = NULL;

  if (!g_file_get_contents ("/proc/meminfo", &text, NULL, NULL))
    return 0;
  return field_kib (text, "\nDirty:") + field_kib (text, "\nWriteback:");
}

int
main (int argc, char **argv)
{
  pid_t child;
  int status = 0;
  long before, peak = 0;

  if (argc < 2) {
    fprintf (stderr, "usage: meminfo-peak COMMAND [ARGS...]\n");
    return 2;
  }
  before = dirty_kib ();
  child = fork ();
  if (child < 0) {
    fprintf (stderr, "meminfo-peak: error: fork: %s\n", strerror (errno));
    return 2;
  }
  if (child == 0) {
    execvp (argv[1], argv + 1);
    fprintf (stderr, "meminfo-peak: error: %s: %s\n", argv[1],
             strerror (errno));
    _exit (127);
  }
  for (;;) {
    pid_t pid = waitpid (child, &status, WNOHANG);

    peak = MAX (peak, dirty_kib ());
    if (pid == child)
      break;
    if (pid < 0 && errno != EINTR) {
      fprintf (stderr, "meminfo-peak: error: waitpid: %s\n",
               strerror (errno));
      return 2;
    }
    g_usleep (5000);
  }
  fprintf (stderr, "dirty-peak-kib %ld before-kib %ld\n", peak, before);
  if (WIFEXITED (status))
    return WEXITSTATUS (status);
  return 128 + (WIFSIGNALED (status) ? WTERMSIG (status) : 0);
}
