/* libsnapmig — what both ends of the tunnel's processes share (lib/tunnel.c,
 * lib/tunnel-client.c): bounded waits for and stops of children, spawning
 * with the stderr collected, line reads with a deadline, the tunnel id's
 * check, removing a private directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "error.h"
#include "interrupt.h"
#include "tunnel.h"
#include "tunnel-private.h"

int
sm_tunnel_ms_left (gint64 deadline)
{
  gint64 d = deadline - sm_tunnel_now_ms ();

  return d < 0 ? 0 : d > G_MAXINT ? G_MAXINT : (int) d;
}

/* ---- processes ------------------------------------------------------------ */

/* Waits (MS at most) for PID to exit; true when it did (reaped). */
bool
sm_tunnel_wait_exit (pid_t pid, int ms, int *status)
{
  gint64 deadline = sm_tunnel_now_ms () + ms;
  int st;

  for (;;) {
    pid_t r = waitpid (pid, &st, WNOHANG);

    if (r == pid || (r < 0 && errno == ECHILD)) {
      if (status)
        *status = r == pid ? st : 0;
      return true;
    }
    if (sm_tunnel_now_ms () >= deadline)
      return false;
    g_usleep (10000);
  }
}

/* Ends the child PID whose stdin the caller closed: a bounded wait, then
 * SIGTERM, then SIGKILL, always by PID. */
void
sm_tunnel_stop_child (pid_t pid, int eof_ms)
{
  if (pid <= 0)
    return;
  if (eof_ms > 0 && sm_tunnel_wait_exit (pid, eof_ms, NULL))
    return;
  kill (pid, SIGTERM);
  if (sm_tunnel_wait_exit (pid, STOP_TERM_MS, NULL))
    return;
  kill (pid, SIGKILL);
  sm_tunnel_wait_exit (pid, 5000, NULL);
}

/* The children die with the tunnel even when it is killed (SIGKILL): the
 * ssh master would otherwise hold the forwards. */
static void
child_setup (gpointer data)
{
  (void) data;
  prctl (PR_SET_PDEATHSIG, SIGTERM);
  signal (SIGPIPE, SIG_DFL);
}

/* Spawns ARGV with its stdin *IN_FD (a socket or pipe we write), stdout
 * *OUT_FD (we read) and stderr *ERR_FD (we read), all close-on-exec on our
 * side, *ERR_FD non-blocking. */
bool
sm_tunnel_spawn (char *const *argv, pid_t *pid, int *in_fd, int *out_fd, int *err_fd,
       GError **error)
{
  GPid p;

  if (!g_spawn_async_with_pipes (NULL, (char **) argv, NULL,
                                 G_SPAWN_DO_NOT_REAP_CHILD |
                                 G_SPAWN_SEARCH_PATH, child_setup, NULL, &p,
                                 in_fd, out_fd, err_fd, error))
    return false;
  *pid = p;
  fcntl (*in_fd, F_SETFD, FD_CLOEXEC);
  fcntl (*out_fd, F_SETFD, FD_CLOEXEC);
  fcntl (*err_fd, F_SETFD, FD_CLOEXEC);
  fcntl (*err_fd, F_SETFL, fcntl (*err_fd, F_GETFL) | O_NONBLOCK);
  return true;
}


void
sm_tunnel_errlog_feed (SmTunnelErrLog *l, const char *p, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\n') {
      if (l->pending->len) {
        g_free (l->last);
        l->last = g_strdup (l->pending->str);
        if (l->echo)
          fprintf (stderr, "%s\n", l->last);
      }
      g_string_truncate (l->pending, 0);
    } else if (l->pending->len < 4096)
      g_string_append_c (l->pending, p[i]);
  }
}

/* Reads what FD has now; false at end of file or error. */
bool
sm_tunnel_errlog_read (SmTunnelErrLog *l, int fd)
{
  char buf[4096];
  ssize_t n;

  while ((n = read (fd, buf, sizeof buf)) > 0)
    sm_tunnel_errlog_feed (l, buf, n);
  return n < 0 && (errno == EAGAIN || errno == EINTR);
}

const char *
sm_tunnel_errlog_last (SmTunnelErrLog *l)
{
  if (l->pending->len)
    return l->pending->str;
  return l->last ? l->last : "";
}

/* Reads one line from FD until DEADLINE, collecting ERR_FD into LOG
 * meanwhile (ERR_FD -1: none).  *LINE without its newline; false with
 * *EOF_SEEN or a timeout or an interruption error. */
bool
sm_tunnel_read_line (int fd, GString *buf, int err_fd, SmTunnelErrLog *log, gint64 deadline,
           char **line, GError **error)
{
  for (;;) {
    char *nl = memchr (buf->str, '\n', buf->len);
    struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
                           { .fd = err_fd, .events = POLLIN } };
    char tmp[4096];
    ssize_t n;
    int r;

    if (nl) {
      *line = g_strndup (buf->str, nl - buf->str);
      g_string_erase (buf, 0, nl - buf->str + 1);
      return true;
    }
    r = poll (p, err_fd >= 0 ? 2 : 1, sm_tunnel_ms_left (deadline));
    if (r < 0 && errno == EINTR) {
      if (sm_interrupt_check (error))
        return false;
      continue;
    }
    if (r == 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT, "no answer");
      return false;
    }
    if (err_fd >= 0 && p[1].revents && !sm_tunnel_errlog_read (log, err_fd))
      err_fd = -1;
    if (p[0].revents) {
      n = read (fd, tmp, sizeof tmp);
      if (n < 0 && (errno == EAGAIN || errno == EINTR))
        continue;
      if (n <= 0) {
        /* what the child said last, now that it is gone */
        if (err_fd >= 0)
          while (poll (&p[1], 1, 200) > 0 && sm_tunnel_errlog_read (log, err_fd))
            ;
        g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
                     "end of file");
        return false;
      }
      g_string_append_len (buf, tmp, n);
    }
  }
}

bool
sm_tunnel_write_all (int fd, const char *p, size_t n)
{
  while (n) {
    ssize_t w = send (fd, p, n, MSG_NOSIGNAL);

    if (w < 0 && errno == ENOTSOCK)
      w = write (fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno == EAGAIN) {
      struct pollfd pf = { .fd = fd, .events = POLLOUT };

      poll (&pf, 1, 1000);
      continue;
    }
    if (w <= 0)
      return false;
    p += w;
    n -= w;
  }
  return true;
}

/* Removes the entries of DIR (not recursively) and DIR. */
void
sm_tunnel_remove_dir (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d && (name = g_dir_read_name (d))) {
    g_autofree char *p = g_build_filename (dir, name, NULL);

    (void) unlink (p);
  }
  (void) rmdir (dir);
}

/* ---- the destination ------------------------------------------------------ */

bool
sm_tunnel_valid_id (const char *id, GError **error)
{
  if (!id || !*id || strchr (id, '/') || strcmp (id, ".") == 0 ||
      strcmp (id, "..") == 0 || strchr (id, '\n')) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "tunnel id '%s' is not a file name", id ? id : "");
    return false;
  }
  return true;
}
