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
 *
 * Also reports, as a second line `cpu-ms N`, the CPU time (user + system)
 * of the command and of every descendant: wait4's rusage for those that
 * ended, utime + stime of /proc/PID/stat so far for those still running.
 *
 *   peak-rss --comm NAME COMMAND [ARGS...]
 *
 * also reports `peak-rss-kib-NAME N`: the largest VmHWM of the descendants
 * whose /proc/PID/comm is NAME, sampled every 10 ms while the command runs
 * and once at its end (bench/nbd-migrate.sh: snapmig's own processes on
 * both sides, without the QEMU and qemu-img processes they start; wait4's
 * figure includes the descendants a process waited for).  Growth in a
 * process's last 10 ms can be missed.
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

/* CPU time (utime + stime) of PID so far, in ms, 0 when unreadable. */
static long
cpu_ms (const char *pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%s/stat", pid);
  g_autofree char *text = NULL;
  g_auto(GStrv) fields = NULL;
  const char *p;

  if (!g_file_get_contents (path, &text, NULL, NULL) ||
      !(p = strrchr (text, ')')))
    return 0;
  fields = g_strsplit (p + 2, " ", 0);
  /* fields[0] is field 3; utime and stime are fields 14 and 15. */
  if (g_strv_length (fields) < 13)
    return 0;
  return (strtol (fields[11], NULL, 10) + strtol (fields[12], NULL, 10)) *
         1000 / sysconf (_SC_CLK_TCK);
}

static long
rusage_cpu_ms (const struct rusage *ru)
{
  return (ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000 +
         (ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1000;
}

/* Largest VmHWM among PID's descendants named COMM (recursively, through
 * every thread's children). */
static long
comm_peak (const char *pid, const char *comm)
{
  g_autofree char *taskdir = g_strdup_printf ("/proc/%s/task", pid);
  g_autoptr(GDir) dir = g_dir_open (taskdir, 0, NULL);
  const char *tid;
  long peak = 0;

  while (dir && (tid = g_dir_read_name (dir))) {
    g_autofree char *path = g_strdup_printf ("%s/%s/children", taskdir, tid);
    g_autofree char *text = NULL;
    g_auto(GStrv) kids = NULL;
    size_t i;

    if (!g_file_get_contents (path, &text, NULL, NULL))
      continue;
    kids = g_strsplit_set (g_strstrip (text), " \n", -1);
    for (i = 0; kids[i]; i++) {
      g_autofree char *cpath = NULL;
      g_autofree char *name = NULL;

      if (!*kids[i])
        continue;
      cpath = g_strdup_printf ("/proc/%s/comm", kids[i]);
      if (g_file_get_contents (cpath, &name, NULL, NULL) &&
          strcmp (g_strstrip (name), comm) == 0)
        peak = MAX (peak, vm_hwm_kib (kids[i]));
      peak = MAX (peak, comm_peak (kids[i], comm));
    }
  }
  return peak;
}

/* Largest VmHWM among our live children (re-parented workers); adds their
 * CPU time so far to *CPU. */
static long
live_children_peak (long *cpu)
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
    if (*pids[i]) {
      peak = MAX (peak, vm_hwm_kib (pids[i]));
      *cpu += cpu_ms (pids[i]);
    }
  return peak;
}

int
main (int argc, char **argv)
{
  struct rusage ru;
  pid_t child, pid;
  int status = 0, st, rc;
  long peak, cpu = 0, cpeak = 0;
  g_autofree char *self = g_strdup_printf ("%d", (int) getpid ());
  const char *comm = NULL;

  if (argc > 3 && strcmp (argv[1], "--comm") == 0) {
    comm = argv[2];
    argv += 2;
    argc -= 2;
  }
  if (argc < 2) {
    fprintf (stderr, "usage: peak-rss [--comm NAME] COMMAND [ARGS...]\n");
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
  if (comm) {
    /* Poll, sampling the tree, until the command exits. */
    while ((pid = wait4 (child, &status, WNOHANG, &ru)) == 0 ||
           (pid < 0 && errno == EINTR)) {
      cpeak = MAX (cpeak, comm_peak (self, comm));
      g_usleep (10000);
    }
  } else {
    while ((pid = wait4 (child, &status, 0, &ru)) < 0 && errno == EINTR)
      ;
  }
  if (pid == child) {
    peak = ru.ru_maxrss;
    cpu += rusage_cpu_ms (&ru);
  }
  while ((pid = wait4 (-1, &st, WNOHANG, &ru)) > 0) {
    peak = MAX (peak, ru.ru_maxrss);
    cpu += rusage_cpu_ms (&ru);
  }
  peak = MAX (peak, live_children_peak (&cpu));

  fprintf (stderr, "peak-rss-kib %ld\ncpu-ms %ld\n", peak, cpu);
  if (comm)
    fprintf (stderr, "peak-rss-kib-%s %ld\n",
             comm, MAX (cpeak, comm_peak (self, comm)));
  if (WIFEXITED (status))
    rc = WEXITSTATUS (status);
  else
    rc = 128 + (WIFSIGNALED (status) ? WTERMSIG (status) : 0);
  return rc;
}
