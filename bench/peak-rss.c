/* peak-rss — runs a command and reports the peak resident set size of it
 * and of every process it started, detached ones included.  GNU time is not
 * on every machine, and it only sees the direct child.
 *
 *   peak-rss COMMAND [ARGS...]
 *
 * The command's stdin, stdout and stderr are its own; afterwards one line
 * `peak-rss-kib N` goes to stderr (bench/validate.sh and bench/lsm.sh parse
 * it).
 *
 * Becomes a child subreaper (PR_SET_CHILD_SUBREAPER), so that a worker the
 * command double-forks is re-parented here instead of to init.  After the
 * command exits: descendants that already ended are reaped with wait4 and
 * their ru_maxrss counted; descendants still running are sampled (VmHWM in
 * /proc/PID/status, their peak so far) and left running.  Reports the
 * largest value in KiB and exits with the command's status.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>

/* VmHWM of PID in KiB, 0 when unreadable. */
static long
vm_hwm_kib (const char *pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%s/status", pid);
  g_autofree char *text = NULL;
  const char *p;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return 0;
  p = strstr (text, "VmHWM:");
  return p ? strtol (p + strlen ("VmHWM:"), NULL, 10) : 0;
}

/* Largest VmHWM among our live children (re-parented workers). */
static long
live_children_peak (void)
{
  g_autofree char *path = g_strdup_printf ("/proc/self/task/%d/children",
                                           (int) getpid ());
  g_autofree char *text = NULL;
  g_auto(GStrv) pids = NULL;
  long peak = 0;
  size_t i;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return 0;
  pids = g_strsplit_set (g_strstrip (text), " \n", -1);
  for (i = 0; pids[i]; i++)
    if (*pids[i])
      peak = MAX (peak, vm_hwm_kib (pids[i]));
  return peak;
}

int
main (int argc, char **argv)
{
  struct rusage ru;
  pid_t child, pid;
  int status = 0, st, rc;
  long peak;

  if (argc < 2) {
    fprintf (stderr, "usage: peak-rss COMMAND [ARGS...]\n");
    return 2;
  }
  if (prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
    fprintf (stderr, "peak-rss: error: PR_SET_CHILD_SUBREAPER: %s\n",
             strerror (errno));
    return 2;
  }
  child = fork ();
  if (child < 0) {
    fprintf (stderr, "peak-rss: error: fork: %s\n", strerror (errno));
    return 2;
  }
  if (child == 0) {
    execvp (argv[1], argv + 1);
    fprintf (stderr, "peak-rss: error: %s: %s\n", argv[1], strerror (errno));
    _exit (127);
  }
  peak = 0;
  while ((pid = wait4 (child, &status, 0, &ru)) < 0 && errno == EINTR)
    ;
  if (pid == child)
    peak = ru.ru_maxrss;
  while ((pid = wait4 (-1, &st, WNOHANG, &ru)) > 0)
    peak = MAX (peak, ru.ru_maxrss);
  peak = MAX (peak, live_children_peak ());

  fprintf (stderr, "peak-rss-kib %ld\n", peak);
  if (WIFEXITED (status))
    rc = WEXITSTATUS (status);
  else
    rc = 128 + (WIFSIGNALED (status) ? WTERMSIG (status) : 0);
  return rc;
}
