/* libsnapmig — QEMU processes: reading a running QEMU's command line,
 * starting the destination QEMU and stopping it (see qemu-proc.h).  The
 * command line rewrite lives in qemu-cmdline.c. */
#include "qemu-proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "image-lock.h"
#include "interrupt.h"

#define DOMAIN "qemu-proc"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* How often a wait looks again. */
#define POLL_US 10000

char **
sm_qemu_read_cmdline (pid_t pid, GError **error)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/cmdline", (int) pid);
  g_autofree char *text = NULL;
  g_autoptr(GError) err = NULL;
  GPtrArray *argv;
  gsize len = 0, i;

  if (!g_file_get_contents (path, &text, &len, &err) || len == 0) {
    if (pid <= 0 || sm_proc_start_time (pid) == 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                   "process %d: no such process (it exited)", (int) pid);
      return NULL;
    }
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "process %d: cannot read its command line %s: %s",
                 (int) pid, path,
                 err ? err->message : "empty (a kernel thread?)");
    return NULL;
  }
  /* Each argument ends with a NUL; a process that rewrote its title may
   * have left the last one unterminated (g_file_get_contents adds one). */
  argv = g_ptr_array_new ();
  for (i = 0; i < len; i += strlen (text + i) + 1)
    g_ptr_array_add (argv, g_strdup (text + i));
  g_ptr_array_add (argv, NULL);
  return (char **) g_ptr_array_free (argv, false);
}

uint64_t
sm_proc_start_time (pid_t pid)
{
  g_autofree char *path = NULL;
  g_autofree char *text = NULL;
  g_auto(GStrv) f = NULL;
  const char *p;

  if (pid <= 0)
    return 0;
  path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  /* "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses, so
   * the fields are counted from the last ')'; field 3 is the state, 22 the
   * start time.  A zombie (Z) or dying (X) process is gone already. */
  if (!g_file_get_contents (path, &text, NULL, NULL) ||
      !(p = strrchr (text, ')')))
    return 0;
  f = g_strsplit (p + 1, " ", 22);
  if (g_strv_length (f) < 21 || strcmp (f[1], "Z") == 0 ||
      strcmp (f[1], "X") == 0)
    return 0;
  return g_ascii_strtoull (f[20], NULL, 10);
}

bool
sm_proc_alive (pid_t pid, uint64_t start_time)
{
  uint64_t now = sm_proc_start_time (pid);

  return now != 0 && (start_time == 0 || now == start_time);
}

/* Sends SIG to PID when it is still the process started at START_TIME:
 * 1 sent, 0 gone or another process (left alone), -1 refused (errno).  A
 * pidfd taken before the check pins the process, so that a PID reused
 * between the check and the signal is never hit. */
static int
signal_same (pid_t pid, uint64_t start_time, int sig)
{
  int fd = (int) syscall (SYS_pidfd_open, pid, 0);
  int r = 0;

  if (sm_proc_alive (pid, start_time)) {
    if (fd >= 0)
      r = syscall (SYS_pidfd_send_signal, fd, sig, NULL, 0) == 0 ? 1 : -1;
    else
      r = kill (pid, sig) == 0 ? 1 : -1;
    if (r < 0 && errno == ESRCH)
      r = 0;
  }
  if (fd >= 0) {
    int e = errno;

    close (fd);
    errno = e;
  }
  return r;
}

/* Waits until PID (START_TIME) is gone or DEADLINE (monotonic µs) passed. */
static bool
wait_gone_until (pid_t pid, uint64_t start_time, gint64 deadline)
{
  while (sm_proc_alive (pid, start_time)) {
    if (g_get_monotonic_time () >= deadline)
      return false;
    g_usleep (POLL_US);
  }
  return true;
}

bool
sm_proc_wait_gone (pid_t pid, uint64_t start_time, int timeout_ms)
{
  return wait_gone_until (pid, start_time,
                          g_get_monotonic_time () +
                            (gint64) MAX (timeout_ms, 0) * 1000);
}

bool
sm_proc_stop (pid_t pid, uint64_t start_time, int grace_ms, GError **error)
{
  int sent = signal_same (pid, start_time, SIGTERM);

  if (sent < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "cannot stop process %d: SIGTERM: %s", (int) pid,
                 g_strerror (errno));
    return false;
  }
  if (sent == 0 || sm_proc_wait_gone (pid, start_time, grace_ms))
    return true;
  sm_debug (DOMAIN, "process %d outlived SIGTERM by %d ms: SIGKILL",
            (int) pid, grace_ms);
  if (signal_same (pid, start_time, SIGKILL) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "cannot stop process %d: SIGKILL: %s", (int) pid,
                 g_strerror (errno));
    return false;
  }
  if (sm_proc_wait_gone (pid, start_time, 10000))
    return true;
  g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
               "process %d is still there 10 s after SIGKILL (stuck in the "
               "kernel?); look at it with `cat /proc/%d/stack`", (int) pid,
               (int) pid);
  return false;
}

void
sm_qemu_proc_free (SmQemuProc *p)
{
  if (!p)
    return;
  g_free (p->log_path);
  g_free (p);
}

/* The grandchild: QEMU itself.  Only async-signal-safe calls until exec;
 * an exec failure is reported as its errno through ERR_FD (close-on-exec,
 * so a successful exec closes it empty). */
G_GNUC_NORETURN static void
exec_qemu (const char *const *argv, int null_fd, int log_fd, int err_fd)
{
  struct sigaction dfl = { .sa_handler = SIG_DFL };
  sigset_t none;
  int sig, e;

  /* The caller's handlers go at exec, but ignored signals and the signal
   * mask would be inherited. */
  for (sig = 1; sig < NSIG; sig++)
    sigaction (sig, &dfl, NULL);
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);
  if (dup2 (null_fd, STDIN_FILENO) >= 0 && dup2 (log_fd, STDOUT_FILENO) >= 0 &&
      dup2 (log_fd, STDERR_FILENO) >= 0) {
    /* A descriptor the caller left inheritable (a lock, a socket) must not
     * live on in a QEMU that outlives it. */
    syscall (SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    execvp (argv[0], (char *const *) argv);
  }
  e = errno;
  if (write (err_fd, &e, sizeof e) < 0)
    _exit (126);
  _exit (127);
}

/* Reads exactly LEN bytes, or less at end of file; -1 on error. */
static ssize_t
read_full (int fd, void *buf, size_t len)
{
  size_t got = 0;

  while (got < len) {
    ssize_t n = read (fd, (char *) buf + got, len - got);

    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    if (n == 0)
      break;
    got += n;
  }
  return got;
}

static void
set_start_error (GError **error, const char *prog, int err)
{
  g_set_error (error, SM_ERROR, SM_ERROR_IO,
               "cannot start the destination QEMU '%s': %s", prog,
               g_strerror (err));
}

/* Forks, double forks and execs ARGV: the QEMU's PID, or 0 with ERROR. */
static pid_t
start_detached (const char *const *argv, int null_fd, int log_fd,
                GError **error)
{
  int info[2], err[2], status, exec_errno = 0, fork_errno;
  pid_t child, qemu = 0;

  if (pipe2 (info, O_CLOEXEC) < 0) {
    set_start_error (error, argv[0], errno);
    return 0;
  }
  if (pipe2 (err, O_CLOEXEC) < 0) {
    set_start_error (error, argv[0], errno);
    close (info[0]);
    close (info[1]);
    return 0;
  }
  child = fork ();
  fork_errno = errno;
  if (child == 0) {
    pid_t grandchild;

    close (info[0]);
    close (err[0]);
    setsid ();
    grandchild = fork ();
    if (grandchild == 0)
      exec_qemu (argv, null_fd, log_fd, err[1]);
    /* The QEMU is reparented to init, which reaps it: never our zombie. */
    _exit (grandchild > 0 &&
           write (info[1], &grandchild, sizeof grandchild) ==
             sizeof grandchild ? 0 : 1);
  }
  close (info[1]);
  close (err[1]);
  if (child < 0) {
    set_start_error (error, argv[0], fork_errno);
  } else {
    while (waitpid (child, &status, 0) < 0 && errno == EINTR)
      ;
    if (read_full (info[0], &qemu, sizeof qemu) != sizeof qemu)
      qemu = 0;
    /* Empty at end of file: the exec went through (close-on-exec). */
    if (read_full (err[0], &exec_errno, sizeof exec_errno) ==
        sizeof exec_errno) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "cannot run the destination QEMU '%s': %s", argv[0],
                   g_strerror (exec_errno));
      qemu = 0;
    } else if (!qemu) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "cannot start the destination QEMU '%s': fork failed",
                   argv[0]);
    }
  }
  close (info[0]);
  close (err[0]);
  return qemu;
}

/* The last few lines LOG_PATH got from byte FROM on, "; "-joined. */
static char *
log_tail (const char *log_path, off_t from)
{
  g_autofree char *text = NULL;
  g_auto(GStrv) lines = NULL;
  g_autoptr(GPtrArray) kept = g_ptr_array_new ();
  gsize len = 0;
  guint i, n;

  if (!g_file_get_contents (log_path, &text, &len, NULL) ||
      (gsize) from >= len)
    return g_strdup_printf ("no message in its log %s", log_path);
  lines = g_strsplit (text + from, "\n", -1);
  n = g_strv_length (lines);
  for (i = n; i > 0 && kept->len < 4; i--)
    if (*g_strstrip (lines[i - 1]))
      g_ptr_array_insert (kept, 0, lines[i - 1]);
  if (!kept->len)
    return g_strdup_printf ("no message in its log %s", log_path);
  g_ptr_array_add (kept, NULL);
  return g_strjoinv ("; ", (char **) kept->pdata);
}

/* True when the unix socket PATH accepts a connection from a server that
 * is not another process than PID (a QEMU that has not yet replaced an old
 * socket of that name). */
static bool
qmp_ready (const char *path, pid_t pid)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool ok;
  pid_t server;

  strcpy (sa.sun_path, path);
  ok = fd >= 0 && connect (fd, (struct sockaddr *) &sa, sizeof sa) == 0;
  if (fd >= 0)
    close (fd);
  if (!ok)
    return false;
  server = sm_unix_socket_server_pid (path);
  return server == 0 || server == pid;
}

SmQemuProc *
sm_qemu_spawn (const char *const *argv, const char *log_path,
               const char *qmp_path, int timeout_ms, GError **error)
{
  g_autoptr(SmQemuProc) p = NULL;
  struct sockaddr_un sa;
  struct stat st;
  int log_fd, null_fd;
  off_t log_start;
  gint64 deadline;

  g_return_val_if_fail (argv && argv[0] && log_path && qmp_path, NULL);
  if (strlen (qmp_path) >= sizeof sa.sun_path) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "QMP socket path %s is longer than a unix socket path may "
                 "be (%zu bytes); choose a shorter run directory", qmp_path,
                 sizeof sa.sun_path - 1);
    return NULL;
  }
  log_fd = open (log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "cannot open the destination QEMU's log %s: %s", log_path,
                 g_strerror (errno));
    return NULL;
  }
  null_fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot open /dev/null: %s",
                 g_strerror (errno));
    close (log_fd);
    return NULL;
  }
  log_start = fstat (log_fd, &st) == 0 ? st.st_size : 0;

  p = g_new0 (SmQemuProc, 1);
  p->log_path = g_strdup (log_path);
  p->pid = start_detached (argv, null_fd, log_fd, error);
  close (log_fd);
  close (null_fd);
  if (!p->pid)
    return NULL;
  p->start_time = sm_proc_start_time (p->pid);
  sm_debug (DOMAIN, "started %s: pid %d, start time %" G_GUINT64_FORMAT,
            argv[0], (int) p->pid, p->start_time);

  deadline = g_get_monotonic_time () + (gint64) MAX (timeout_ms, 0) * 1000;
  for (;;) {
    if (p->start_time && qmp_ready (qmp_path, p->pid))
      return g_steal_pointer (&p);
    if (!p->start_time || !sm_proc_alive (p->pid, p->start_time)) {
      g_autofree char *tail = log_tail (log_path, log_start);

      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "destination QEMU exited: %s (log: %s)", tail, log_path);
      return NULL;
    }
    if (g_get_monotonic_time () >= deadline) {
      sm_proc_stop (p->pid, p->start_time, 1000, NULL);
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "destination QEMU (pid %d) did not open its QMP socket %s "
                   "within %d ms; it was killed (log: %s)", (int) p->pid,
                   qmp_path, timeout_ms, log_path);
      return NULL;
    }
    if (sm_interrupt_check (error)) {
      sm_proc_stop (p->pid, p->start_time, 1000, NULL);
      return NULL;
    }
    g_usleep (POLL_US);
  }
}

/* ---- cutting a stuck connection ------------------------------------------ */

/* "0100007F:1F90" as /proc/net/tcp writes 127.0.0.1:8080 (the address's
 * bytes as the kernel holds them, each 32-bit word in host order). */
static char *
proc_net_address (const char *host, int port, bool *v6)
{
  struct in_addr a4;
  struct in6_addr a6;

  if (inet_pton (AF_INET, host, &a4) == 1) {
    *v6 = false;
    return g_strdup_printf ("%08X:%04X", a4.s_addr, port);
  }
  if (inet_pton (AF_INET6, host, &a6) == 1) {
    uint32_t w[4];

    memcpy (w, &a6, sizeof w);
    *v6 = true;
    return g_strdup_printf ("%08X%08X%08X%08X:%04X", w[0], w[1], w[2], w[3],
                            port);
  }
  return NULL;
}

bool
sm_proc_sever_tcp (pid_t pid, const char *host, int port, int *count,
                   GError **error)
{
  bool v6 = false;
  g_autofree char *want = proc_net_address (host, port, &v6);
  g_autofree char *table = NULL;
  g_autofree char *table_path = g_strdup_printf ("/proc/%d/net/%s", (int) pid,
                                                 v6 ? "tcp6" : "tcp");
  g_autofree char *fd_dir = g_strdup_printf ("/proc/%d/fd", (int) pid);
  g_autoptr(GHashTable) inodes = g_hash_table_new_full (g_str_hash,
                                                        g_str_equal, g_free,
                                                        NULL);
  g_auto(GStrv) lines = NULL;
  g_autoptr(GDir) dir = NULL;
  const char *name;
  int pidfd;

  *count = 0;
  if (!want) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s is not an IP address", host);
    return false;
  }
  if (!g_file_get_contents (table_path, &table, NULL, NULL)) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot read %s", table_path);
    return false;
  }
  lines = g_strsplit (table, "\n", -1);
  for (char **l = lines; *l; l++) {
    g_auto(GStrv) f = g_strsplit_set (g_strstrip (*l), " ", -1);
    g_autoptr(GPtrArray) col = g_ptr_array_new ();

    for (char **x = f; *x; x++)
      if (**x)
        g_ptr_array_add (col, *x);
    /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
    if (col->len > 9 && g_ascii_strcasecmp (col->pdata[2], want) == 0)
      g_hash_table_add (inodes, g_strdup_printf ("socket:[%s]",
                                                 (char *) col->pdata[9]));
  }
  if (g_hash_table_size (inodes) == 0)
    return true;
  dir = g_dir_open (fd_dir, 0, NULL);
  pidfd = (int) syscall (SYS_pidfd_open, pid, 0);
  if (!dir || pidfd < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "process %d: cannot reach its "
                 "descriptors: %s", (int) pid, g_strerror (errno));
    if (pidfd >= 0)
      close (pidfd);
    return false;
  }
  while ((name = g_dir_read_name (dir))) {
    g_autofree char *link_path = g_build_filename (fd_dir, name, NULL);
    g_autofree char *target = g_file_read_link (link_path, NULL);
    int fd;

    if (!target || !g_hash_table_contains (inodes, target))
      continue;
    fd = (int) syscall (SYS_pidfd_getfd, pidfd, atoi (name), 0);
    if (fd < 0)
      continue;
    if (shutdown (fd, SHUT_RDWR) == 0)
      (*count)++;
    close (fd);
  }
  close (pidfd);
  return true;
}

char *
sm_qemu_cmdline_option (char **argv, const char *opt)
{
  if (!argv)
    return NULL;
  for (guint i = 1; argv[i] && argv[i + 1]; i++) {
    const char *a = argv[i];

    if (a[0] == '-' && a[1] == '-')
      a++;
    if (strcmp (a, opt) == 0) {
      g_autofree char *v = g_strdup (argv[i + 1]);
      char *comma = strchr (v, ',');

      if (comma)
        *comma = '\0';
      if (g_str_has_prefix (v, "guest="))
        return g_strdup (v + 6);
      return g_steal_pointer (&v);
    }
  }
  return NULL;
}

/* The value of libvirt's "-chardev socket,id=charmonitor,..." in ARGV, or
 * NULL (owned by ARGV). */
static const char *
libvirt_monitor_chardev (char **argv)
{
  for (guint i = 1; argv && argv[i] && argv[i + 1]; i++)
    if (strcmp (argv[i], "-chardev") == 0
        && g_str_has_prefix (argv[i + 1], "socket,id=charmonitor,"))
      return argv[i + 1];
  return NULL;
}

char *
sm_qemu_libvirt_domain (pid_t pid)
{
  g_auto(GStrv) argv = pid > 0 ? sm_qemu_read_cmdline (pid, NULL) : NULL;

  return libvirt_monitor_chardev (argv)
    ? sm_qemu_cmdline_option (argv, "-name") : NULL;
}

SmLibvirtMonitor
sm_qemu_libvirt_monitor (pid_t pid, const char *path)
{
  g_auto(GStrv) argv = pid > 0 ? sm_qemu_read_cmdline (pid, NULL) : NULL;
  g_auto(GStrv) opts = NULL;
  unsigned long inode = sm_unix_socket_inode (path);

  if (!libvirt_monitor_chardev (argv))
    return SM_LIBVIRT_MONITOR_NO;
  opts = g_strsplit (libvirt_monitor_chardev (argv), ",", -1);
  for (guint i = 0; opts[i]; i++) {
    if (g_str_has_prefix (opts[i], "path="))
      return sm_unix_socket_inode (opts[i] + 5) == inode && inode
        ? SM_LIBVIRT_MONITOR_YES : SM_LIBVIRT_MONITOR_NO;
    if (g_str_has_prefix (opts[i], "fd=")) {
      g_autofree char *link = g_strdup_printf ("/proc/%d/fd/%s", (int) pid,
                                               opts[i] + 3);
      g_autofree char *target = g_file_read_link (link, NULL);
      g_autofree char *want = g_strdup_printf ("socket:[%lu]", inode);

      if (!target || !inode)
        return SM_LIBVIRT_MONITOR_UNKNOWN;
      return strcmp (target, want) == 0 ? SM_LIBVIRT_MONITOR_YES
        : SM_LIBVIRT_MONITOR_NO;
    }
  }
  return SM_LIBVIRT_MONITOR_UNKNOWN;
}
