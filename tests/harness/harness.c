/* tests/harness — real-QEMU helpers for the C tests and tools. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <linux/loop.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qmp.h"

struct SmTestVm {
  pid_t pid;
  char *address;       /* socket path or 127.0.0.1:PORT */
  char *log;
  SmQmp *qmp;
};

/* Prints each line of TEXT as a TAP comment, so that a log says why. */
static void
print_comment (const char *prefix, const char *text)
{
  g_auto(GStrv) lines = g_strsplit (text ? text : "", "\n", -1);
  size_t i;

  for (i = 0; lines[i]; i++)
    if (lines[i][0] || !lines[i + 1])
      g_printerr ("# %s%s\n", prefix, lines[i]);
}

static void G_GNUC_PRINTF (1, 2)
complain (const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  print_comment ("", msg);
}

/* ---- temporary directories ------------------------------------------ */

static GPtrArray *tmpdirs;     /* char *, removed at exit */
static pid_t tmpdirs_owner;    /* a forked child must not remove them */

static int
remove_entry (const char *path, const struct stat *st, int flag,
              struct FTW *ftw)
{
  (void) st;
  (void) flag;
  (void) ftw;
  remove (path);
  return 0;
}

static void
remove_tmpdirs (void)
{
  guint i;

  if (!tmpdirs || getpid () != tmpdirs_owner)
    return;
  for (i = 0; i < tmpdirs->len; i++)
    nftw (tmpdirs->pdata[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  g_ptr_array_free (tmpdirs, TRUE);
  tmpdirs = NULL;
}

/* A failed g_assert aborts without running atexit handlers; removing the
 * directories from the signal handler is not async-signal-safe, but the
 * process is dying anyway and a leftover directory is worse.
 */
static void
on_abort (int sig)
{
  remove_tmpdirs ();
  signal (sig, SIG_DFL);
  raise (sig);
}

char *
sm_test_source_tree (const char *probe, char **shared)
{
  g_autofree char *here = g_test_build_filename (G_TEST_DIST, "..", "..", NULL);
  g_autofree char *top = g_canonicalize_filename (here, NULL);
  g_autofree char *path = g_build_filename (top, probe, NULL);
  g_autofree char *shared_path = NULL;

  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    g_error ("cannot find the source tree (no %s); set G_TEST_SRCDIR to "
             "its tests/unit directory", path);
  if (shared) {
    shared_path = g_build_filename (top, "..", "shared", NULL);
    *shared = g_file_test (shared_path, G_FILE_TEST_IS_DIR)
      ? g_canonicalize_filename (shared_path, NULL) : NULL;
  }
  return g_steal_pointer (&top);
}

char *
sm_test_tmpdir (void)
{
  g_autoptr(GError) err = NULL;
  char *dir = g_dir_make_tmp ("snapmig-test-XXXXXX", &err);

  if (!dir)
    g_error ("cannot make a temporary directory: %s", err->message);
  if (!tmpdirs) {
    tmpdirs = g_ptr_array_new_with_free_func (g_free);
    tmpdirs_owner = getpid ();
    atexit (remove_tmpdirs);
    signal (SIGABRT, on_abort);
  }
  g_ptr_array_add (tmpdirs, g_strdup (dir));
  return dir;
}

/* ---- programs -------------------------------------------------------- */

bool
sm_test_run (const char *const *argv, char **output, bool quiet)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *out = NULL;
  g_autofree char *errout = NULL;
  g_autofree char *cmd = g_strjoinv (" ", (char **) argv);
  int status = 0;

  if (output)
    *output = NULL;
  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL,
                     NULL, &out, &errout, &status, &err)) {
    if (!quiet)
      complain ("cannot run %s: %s", cmd, err->message);
    return false;
  }
  if (output)
    *output = g_strconcat (out, errout, NULL);
  if (!g_spawn_check_wait_status (status, NULL)) {
    if (!quiet) {
      complain ("command failed: %s", cmd);
      print_comment ("  ", out);
      print_comment ("  ", errout);
    }
    return false;
  }
  return true;
}

bool
sm_test_qemu_img (const char *first_arg, ...)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  const char *a;
  va_list ap;

  g_ptr_array_add (argv, (char *) "qemu-img");
  va_start (ap, first_arg);
  for (a = first_arg; a; a = va_arg (ap, const char *))
    g_ptr_array_add (argv, (char *) a);
  va_end (ap);
  g_ptr_array_add (argv, NULL);
  return sm_test_run ((const char *const *) argv->pdata, NULL, false);
}

bool
sm_test_create_raw (const char *path, uint64_t size)
{
  g_autofree char *sz = g_strdup_printf ("%" PRIu64, size);

  return sm_test_qemu_img ("create", "-q", "-f", "raw", path, sz, NULL);
}

bool
sm_test_create_qcow2 (const char *path, uint64_t size, const char *backing,
                      const char *backing_fmt)
{
  g_autofree char *sz = size ? g_strdup_printf ("%" PRIu64, size) : NULL;

  if (!backing)
    return sm_test_qemu_img ("create", "-q", "-f", "qcow2", path, sz, NULL);
  if (!backing_fmt) {
    complain ("sm_test_create_qcow2 %s: a backing format is required", path);
    return false;
  }
  /* sz NULL ends the list early: size taken from the backing file. */
  return sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-F", backing_fmt,
                           "-b", backing, path, sz, NULL);
}

bool
sm_test_image_read_pattern (const char *img, const char *fmt,
                            unsigned pattern, uint64_t offset, uint64_t len)
{
  g_autofree char *io = g_strdup_printf ("read -P 0x%x %" PRIu64 " %" PRIu64,
                                         pattern, offset, len);
  const char *argv[] = { "qemu-io", "-r", "-f", fmt, "-c", io, img, NULL };
  g_autofree char *out = NULL;

  /* qemu-io exits 0 even when the pattern does not match. */
  if (!sm_test_run (argv, &out, false))
    return false;
  if (sm_test_hmp_output_failed (out) || !strstr (out, "read ")) {
    complain ("%s: %s", img, io);
    print_comment ("  ", out);
    return false;
  }
  return true;
}

int
sm_test_free_port (void)
{
  struct sockaddr_in sin = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
  socklen_t len = sizeof sin;
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int port = 0;

  if (fd < 0)
    return 0;
  if (bind (fd, (struct sockaddr *) &sin, sizeof sin) == 0 &&
      getsockname (fd, (struct sockaddr *) &sin, &len) == 0)
    port = ntohs (sin.sin_port);
  close (fd);
  return port;
}

/* ---- loop devices ---------------------------------------------------- */

int
sm_test_loop_attach (const char *file, char **dev)
{
  int ctl, backing, fd = -1;
  unsigned tries;

  *dev = NULL;
  ctl = open ("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) {
    complain ("no loop devices: /dev/loop-control: %s", g_strerror (errno));
    return -1;
  }
  backing = open (file, O_RDWR | O_CLOEXEC);
  if (backing < 0) {
    complain ("loop device over %s: %s", file, g_strerror (errno));
    close (ctl);
    return -1;
  }
  for (tries = 0; tries < 10; tries++) {
    struct loop_config cfg = { .fd = (uint32_t) backing,
                               .info.lo_flags = LO_FLAGS_AUTOCLEAR };
    g_autofree char *node = NULL;
    int n = ioctl (ctl, LOOP_CTL_GET_FREE);
    int saved;

    if (n < 0) {
      complain ("no free loop device: %s", g_strerror (errno));
      break;
    }
    node = g_strdup_printf ("/dev/loop%d", n);
    fd = open (node, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      complain ("%s: %s", node, g_strerror (errno));
      break;
    }
    /* LOOP_CONFIGURE (Linux 5.8) attaches and sets the flags in one step,
     * so no device is ever attached without AUTOCLEAR. */
    if (ioctl (fd, LOOP_CONFIGURE, &cfg) == 0) {
      *dev = g_steal_pointer (&node);
      break;
    }
    saved = errno;
    close (fd);
    fd = -1;
    if (saved != EBUSY) {
      complain ("%s: cannot attach %s: %s", node, file, g_strerror (saved));
      break;
    }
    /* Another program took that device in between: try the next. */
  }
  if (fd < 0 && tries == 10)
    complain ("loop device over %s: every free device was taken", file);
  close (backing);
  close (ctl);
  return fd;
}

/* ---- HMP ------------------------------------------------------------- */

bool
sm_test_hmp_output_failed (const char *text)
{
  static const char *const markers[] = {
    "pattern verification failed", "error", "failed", "not found",
    "invalid", "cannot", "unknown",
  };
  g_autofree char *lower = g_ascii_strdown (text ? text : "", -1);
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (markers); i++)
    if (strstr (lower, markers[i]))
      return true;
  return false;
}

static off_t
file_size (const char *path)
{
  struct stat st;

  return path && stat (path, &st) == 0 ? st.st_size : 0;
}

static char *
read_from (const char *path, off_t offset)
{
  g_autofree char *all = NULL;
  gsize len = 0;

  if (!path || !g_file_get_contents (path, &all, &len, NULL))
    return g_strdup ("");
  if ((gsize) offset > len)
    return g_strdup ("");
  return g_strdup (all + offset);
}

bool
sm_test_hmp (SmQmp *qmp, const char *log, const char *command_line,
             char **output)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *reply = NULL;
  g_autofree char *logged = NULL;
  off_t before = file_size (log);
  bool ok;

  if (output)
    *output = NULL;
  reply = sm_qmp_hmp (qmp, command_line, &err);
  if (!reply) {
    if (output)
      *output = g_strdup (err->message);
    return false;
  }
  /* QEMU has written qemu-io's lines to its stdout before it sends the HMP
   * reply (the command runs to completion first), so they are there now. */
  logged = read_from (log, before);
  /* Any HMP command reports its own failure as "Error: ..."; other text is
   * only judged for qemu-io, whose output wording is known. */
  ok = !g_str_has_prefix (reply, "Error");
  if (ok && g_str_has_prefix (command_line, "qemu-io "))
    ok = !sm_test_hmp_output_failed (reply) &&
      !sm_test_hmp_output_failed (logged);
  if (ok && log && g_str_has_prefix (command_line, "qemu-io ")) {
    if (strstr (command_line, "\"read ") && !strstr (logged, "read "))
      ok = false;
    if (strstr (command_line, "\"write ") && !strstr (logged, "wrote "))
      ok = false;
  }
  if (output)
    *output = g_strconcat (reply, logged, NULL);
  return ok;
}

char *
sm_test_log_for_socket (const char *address)
{
  g_autofree char *log = NULL;

  if (!g_str_has_suffix (address, ".qmp"))
    return NULL;
  log = g_strdup_printf ("%.*s.log", (int) strlen (address) - 4, address);
  if (!g_file_test (log, G_FILE_TEST_EXISTS))
    return NULL;
  return g_steal_pointer (&log);
}

static bool
guest_io (SmTestVm *vm, const char *op, const char *drive, unsigned pattern,
          uint64_t offset, uint64_t len)
{
  g_autofree char *cmd = g_strdup_printf ("qemu-io %s \"%s -P 0x%x %" PRIu64
                                          " %" PRIu64 "\"", drive, op,
                                          pattern, offset, len);
  g_autofree char *out = NULL;

  if (!vm->qmp) {
    complain ("%s: VM has no QMP connection", cmd);
    return false;
  }
  if (sm_test_hmp (vm->qmp, vm->log, cmd, &out))
    return true;
  complain ("%s failed:", cmd);
  print_comment ("  ", out);
  return false;
}

bool
sm_test_guest_write (SmTestVm *vm, const char *drive, unsigned pattern,
                     uint64_t offset, uint64_t len)
{
  return guest_io (vm, "write", drive, pattern, offset, len);
}

bool
sm_test_guest_read (SmTestVm *vm, const char *drive, unsigned pattern,
                    uint64_t offset, uint64_t len)
{
  return guest_io (vm, "read", drive, pattern, offset, len);
}

/* ---- VMs ------------------------------------------------------------- */

SmQmp *
sm_test_vm_qmp (SmTestVm *vm)
{
  return vm->qmp;
}

const char *
sm_test_vm_socket (const SmTestVm *vm)
{
  return vm->address;
}

pid_t
sm_test_vm_pid (const SmTestVm *vm)
{
  return vm->pid;
}

const char *
sm_test_vm_log (const SmTestVm *vm)
{
  return vm->log;
}

void
sm_test_vm_kill (SmTestVm *vm)
{
  if (vm->pid <= 0)
    return;
  kill (vm->pid, SIGKILL);
  while (waitpid (vm->pid, NULL, 0) < 0 && errno == EINTR)
    ;
  vm->pid = 0;
}

void
sm_test_vm_free (SmTestVm *vm)
{
  if (!vm)
    return;
  sm_test_vm_kill (vm);
  sm_qmp_free (vm->qmp);
  g_free (vm->address);
  g_free (vm->log);
  g_free (vm);
}

static void
print_log (const SmTestVm *vm)
{
  g_autofree char *text = read_from (vm->log, 0);

  complain ("QEMU log %s:", vm->log);
  print_comment ("  ", text);
}

/* Everything the child needs is prepared before fork(): a test may have
 * threads (a fake QMP peer), so the child only calls async-signal-safe
 * functions before exec.
 */
static pid_t
spawn_qemu (char **argv, int log_fd)
{
  pid_t parent = getpid ();
  pid_t pid = fork ();
  int null_fd;

  if (pid != 0)
    return pid;
  /* QEMU dies with the test, however the test ends. */
  prctl (PR_SET_PDEATHSIG, SIGKILL);
  if (getppid () != parent)
    _exit (127);
  null_fd = open ("/dev/null", O_RDONLY);
  if (null_fd >= 0)
    dup2 (null_fd, 0);
  dup2 (log_fd, 1);
  dup2 (log_fd, 2);
  execvp (argv[0], argv);
  _exit (127);
}

SmTestVm *
sm_test_vm_start_full (const SmTestVmOptions *opts)
{
  g_autoptr(SmTestVm) vm = g_new0 (SmTestVm, 1);
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) err = NULL;
  int timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 20000;
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  size_t i;
  int log_fd;

  vm->log = g_strdup_printf ("%s/%s.log", opts->dir, opts->name);
  if (opts->tcp_port > 0)
    vm->address = g_strdup_printf ("127.0.0.1:%d", opts->tcp_port);
  else
    vm->address = g_strdup_printf ("%s/%s.qmp", opts->dir, opts->name);

  g_ptr_array_add (argv, g_strdup ("qemu-system-x86_64"));
  g_ptr_array_add (argv, g_strdup ("-M"));
  g_ptr_array_add (argv, g_strdup ("none"));
  g_ptr_array_add (argv, g_strdup ("-nodefaults"));
  g_ptr_array_add (argv, g_strdup ("-display"));
  g_ptr_array_add (argv, g_strdup ("none"));
  g_ptr_array_add (argv, g_strdup ("-qmp"));
  if (opts->tcp_port > 0)
    g_ptr_array_add (argv, g_strdup_printf ("tcp:%s,server=on,wait=off",
                                            vm->address));
  else
    g_ptr_array_add (argv, g_strdup_printf ("unix:%s,server=on,wait=off",
                                            vm->address));
  for (i = 0; opts->drives && opts->drives[i]; i++) {
    g_ptr_array_add (argv, g_strdup ("-drive"));
    g_ptr_array_add (argv, g_strdup (opts->drives[i]));
  }
  for (i = 0; opts->extra_args && opts->extra_args[i]; i++)
    g_ptr_array_add (argv, g_strdup (opts->extra_args[i]));
  g_ptr_array_add (argv, NULL);

  log_fd = open (vm->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    complain ("cannot create %s: %s", vm->log, g_strerror (errno));
    return NULL;
  }
  vm->pid = spawn_qemu ((char **) argv->pdata, log_fd);
  close (log_fd);
  if (vm->pid < 0) {
    complain ("fork: %s", g_strerror (errno));
    vm->pid = 0;
    return NULL;
  }

  /* Poll until the monitor answers: QEMU creates the socket, then listens;
   * a connect in between is refused and simply retried. */
  for (;;) {
    int status;
    gint64 left = (deadline - g_get_monotonic_time ()) / 1000;

    if (waitpid (vm->pid, &status, WNOHANG) == vm->pid) {
      vm->pid = 0;
      complain ("QEMU %s exited during start-up", opts->name);
      print_log (vm);
      return NULL;
    }
    if (left <= 0) {
      complain ("QEMU %s: monitor %s not ready after %d ms: %s", opts->name,
                vm->address, timeout_ms, err ? err->message : "no socket");
      print_log (vm);
      return NULL;
    }
    g_clear_error (&err);
    if (opts->tcp_port > 0 || g_file_test (vm->address, G_FILE_TEST_EXISTS)) {
      /* Each attempt gets at most 5 s: once (under valgrind, during a full
       * `make check`) a QEMU 7.2 sent its greeting on a connection made
       * during start-up but never answered qmp_capabilities on it; a new
       * connection is the cure, not a longer wait. */
      vm->qmp = sm_qmp_connect (vm->address, (int) MIN (left, 5000), &err);
      if (vm->qmp)
        break;
    }
    g_usleep (10 * 1000);
  }
  if (opts->no_connect)
    g_clear_pointer (&vm->qmp, sm_qmp_free);
  return g_steal_pointer (&vm);
}

SmTestVm *
sm_test_vm_start (const char *dir, const char *name,
                  const char *const *drive_opts)
{
  SmTestVmOptions opts = { .dir = dir, .name = name, .drives = drive_opts };

  return sm_test_vm_start_full (&opts);
}
