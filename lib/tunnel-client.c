/* libsnapmig — the tunnel's client (lib/tunnel.h): what migrate uses to
 * start `snapmig tunnel`, ask it for forwards and its state over the
 * control channel, and end it.
 */
#include "tunnel.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "tunnel-private.h"

struct SmTunnel {
  pid_t pid;
  int ctl;                     /* socket: the tunnel's stdin and stdout */
  int err_fd;
  SmTunnelErrLog log;
  GString *buf;
  char *mode;
  char *remote_dir;
  char *local_dir;
  char *what;                  /* the destination command, for messages */
  int timeout_ms;
  bool dead;
};

static void
tunnel_kill (SmTunnel *t)
{
  if (t->ctl >= 0)
    close (t->ctl);
  t->ctl = -1;
  sm_tunnel_stop_child (t->pid, 2 * STOP_EOF_MS);  /* it stops its transport first */
  t->pid = 0;
  if (t->local_dir && g_file_test (t->local_dir, G_FILE_TEST_IS_DIR))
    sm_tunnel_remove_dir (t->local_dir);
}

void
sm_tunnel_close (SmTunnel *t)
{
  if (!t)
    return;
  tunnel_kill (t);
  if (t->err_fd >= 0)
    close (t->err_fd);
  g_string_free (t->log.pending, TRUE);
  g_free (t->log.last);
  g_string_free (t->buf, TRUE);
  g_free (t->mode);
  g_free (t->remote_dir);
  g_free (t->local_dir);
  g_free (t->what);
  g_free (t);
}

/* Reads the tunnel's log to its end; GONE: the tunnel ended, wait (1 s
 * at most) for it to exit first so that its last line is there. */
static void
tunnel_log_read (SmTunnel *t, bool gone)
{
  if (gone && t->pid > 0 && sm_tunnel_wait_exit (t->pid, 1000, NULL))
    t->pid = 0;
  sm_tunnel_errlog_read (&t->log, t->err_fd);
}

/* The tunnel's last word ("error MESSAGE" on its stderr), for errors. */
static const char *
tunnel_said (SmTunnel *t)
{
  const char *s = sm_tunnel_errlog_last (&t->log);

  if (g_str_has_prefix (s, "error "))
    s += 6;
  return *s ? s : "no message";
}

SmTunnel *
sm_tunnel_open (const char *self_exe, const char *const *dest_argv,
                const char *const *dest_extra, const char *id,
                const char *local_dir, int link_timeout_ms, int timeout_ms,
                GError **error)
{
  g_autoptr(SmTunnel) t = g_new0 (SmTunnel, 1);
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) err = NULL;
  g_autofree char *line = NULL;
  g_auto(GStrv) words = NULL;
  g_autofree char *log_path = NULL;
  int sp[2], log_w;
  pid_t pid;
  size_t i;

  t->ctl = t->err_fd = -1;
  t->buf = g_string_new (NULL);
  t->log.pending = g_string_new (NULL);
  t->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
  if (!sm_tunnel_valid_id (id, error))
    return NULL;
  if (!dest_argv || !dest_argv[0]) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "tunnel: no destination command");
    return NULL;
  }
  t->what = g_strjoinv (" ", (char **) dest_argv);
  if (mkdir (local_dir, 0700) < 0) {
    g_set_error (error, SM_ERROR, errno == EEXIST ? SM_ERROR_EXISTS
                 : SM_ERROR_IO, "cannot make the tunnel's directory %s: %s",
                 local_dir, g_strerror (errno));
    return NULL;
  }
  t->local_dir = g_strdup (local_dir);

  g_ptr_array_add (argv, g_strdup (self_exe));
  g_ptr_array_add (argv, g_strdup ("tunnel"));
  g_ptr_array_add (argv, g_strconcat ("--id=", id, NULL));
  g_ptr_array_add (argv, g_strconcat ("--local-dir=", local_dir, NULL));
  g_ptr_array_add (argv, g_strdup_printf ("--link-timeout-ms=%d",
                                          link_timeout_ms));
  for (i = 0; dest_extra && dest_extra[i]; i++)
    g_ptr_array_add (argv, g_strconcat ("--dest-opt=", dest_extra[i], NULL));
  g_ptr_array_add (argv, g_strdup ("--"));
  for (i = 0; dest_argv[i]; i++)
    g_ptr_array_add (argv, g_strdup (dest_argv[i]));
  g_ptr_array_add (argv, NULL);

  /* the control channel is a socket (our writes never raise SIGPIPE); the
   * tunnel's stderr a file in LOCAL_DIR that we read through our own
   * descriptor (still there once the tunnel removed the directory), so
   * that the tunnel never blocks on it whatever it and ssh say */
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "tunnel: socketpair: %s",
                 g_strerror (errno));
    return NULL;
  }
  log_path = g_build_filename (local_dir, "tunnel.log", NULL);
  log_w = open (log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  t->err_fd = open (log_path, O_RDONLY | O_CLOEXEC);
  if (log_w < 0 || t->err_fd < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "tunnel: %s: %s", log_path,
                 g_strerror (errno));
    if (log_w >= 0)
      close (log_w);
    close (sp[0]);
    close (sp[1]);
    return NULL;
  }
  pid = fork ();
  if (pid == 0) {
    dup2 (sp[1], 0);
    dup2 (sp[1], 1);
    dup2 (log_w, 2);
    closefrom (3);             /* none of migrate's descriptors */
    for (int sig = 1; sig < NSIG; sig++)
      if (sig != SIGKILL && sig != SIGSTOP)
        signal (sig, SIG_DFL);
    execvp (self_exe, (char **) argv->pdata);
    dprintf (2, "error cannot run %s: %s\n", self_exe, strerror (errno));
    _exit (127);
  }
  close (sp[1]);
  close (log_w);
  t->ctl = sp[0];
  if (pid < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "tunnel: fork: %s",
                 g_strerror (errno));
    return NULL;
  }
  t->pid = pid;

  if (!sm_tunnel_read_line (t->ctl, t->buf, -1, NULL, sm_tunnel_now_ms () + t->timeout_ms,
                  &line, &err)) {
    tunnel_log_read (t, err->code != SM_ERROR_TIMEOUT);
    if (err->code == SM_ERROR_TIMEOUT)
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "the tunnel through '%s' was not up within %d s "
                   "(link timeout %d ms): %s", t->what, t->timeout_ms / 1000,
                   link_timeout_ms, sm_tunnel_errlog_last (&t->log));
    else
      g_set_error (error, SM_ERROR, err->code == SM_ERROR_INTERRUPTED
                   ? SM_ERROR_INTERRUPTED : SM_ERROR_DISCONNECTED,
                   "the tunnel through '%s' did not come up: %s", t->what,
                   err->code == SM_ERROR_INTERRUPTED ? err->message
                   : tunnel_said (t));
    return NULL;
  }
  words = g_strsplit (line, " ", 3);
  if (g_strv_length (words) != 3 || strcmp (words[0], "ready") != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "the tunnel through '%s' said '%s', not 'ready'", t->what,
                 line);
    return NULL;
  }
  t->mode = g_strdup (words[1]);
  t->remote_dir = g_strdup (words[2]);
  return g_steal_pointer (&t);
}

const char *sm_tunnel_mode (const SmTunnel *t) { return t->mode; }
const char *sm_tunnel_remote_dir (const SmTunnel *t) { return t->remote_dir; }

/* Sends REQUEST, returns its answer line (caller frees). */
static char *
request (SmTunnel *t, const char *req, GError **error)
{
  g_autofree char *msg = g_strconcat (req, "\n", NULL);
  g_autoptr(GError) err = NULL;
  char *line = NULL;

  if (t->dead || !sm_tunnel_write_all (t->ctl, msg, strlen (msg)) ||
      !sm_tunnel_read_line (t->ctl, t->buf, -1, NULL, sm_tunnel_now_ms () + t->timeout_ms,
                  &line, &err)) {
    tunnel_log_read (t, !err || err->code != SM_ERROR_TIMEOUT);
    if (err && err->code == SM_ERROR_TIMEOUT)
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "the tunnel through '%s' did not answer '%s' within "
                   "%d s", t->what, req, t->timeout_ms / 1000);
    else if (err && err->code == SM_ERROR_INTERRUPTED)
      g_propagate_error (error, g_steal_pointer (&err));
    else {
      t->dead = true;
      g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
                   "the tunnel through '%s' is gone: %s", t->what,
                   tunnel_said (t));
    }
    return NULL;
  }
  return line;
}

/* "ok PATH" -> "unix:PATH"; "error MESSAGE" -> ERROR. */
static char *
ok_path (SmTunnel *t, char *line, GError **error)
{
  g_autofree char *l = line;

  if (g_str_has_prefix (l, "ok "))
    return g_strconcat ("unix:", l + 3, NULL);
  g_set_error (error, SM_ERROR, SM_ERROR_FAILED, "tunnel through '%s': %s",
               t->what, g_str_has_prefix (l, "error ") ? l + 6 : l);
  return NULL;
}

static const char *
unix_path (const char *uri, GError **error)
{
  if (!uri || !g_str_has_prefix (uri, "unix:") || uri[5] != '/') {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "tunnel: '%s' is not unix:/PATH (a tunnel carries unix "
                 "sockets only)", uri ? uri : "");
    return NULL;
  }
  return uri + 5;
}

char *
sm_tunnel_forward (SmTunnel *t, const char *remote_uri, GError **error)
{
  const char *path = unix_path (remote_uri, error);
  g_autofree char *req = NULL;
  g_autofree char *local = NULL;
  char *line;

  if (!path)
    return NULL;
  req = g_strconcat ("forward ", path, NULL);
  line = request (t, req, error);
  local = line ? ok_path (t, line, error) : NULL;
  if (!local)
    return NULL;
  /* a forward asked for while the transport is down is set up when it is
   * back: its local socket is there only then, and a client (QEMU's
   * `migrate`) connects at once */
  for (gint64 end = sm_tunnel_now_ms () + t->timeout_ms;;) {
    SmTunnelState st;
    struct stat sb;

    if (!sm_tunnel_state (t, &st, error))
      return NULL;
    if (st.up && stat (local + strlen ("unix:"), &sb) == 0 && S_ISSOCK (sb.st_mode))
      return g_steal_pointer (&local);
    if (sm_tunnel_now_ms () >= end) {
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "the tunnel to the destination (%s) is down: its forward "
                   "to %s is not there after %d s", t->what, path,
                   t->timeout_ms / 1000);
      return NULL;
    }
    g_usleep (100000);
  }
}

char *
sm_tunnel_reverse (SmTunnel *t, const char *name, const char *local_uri,
                   GError **error)
{
  const char *path = unix_path (local_uri, error);
  g_autofree char *req = NULL;
  char *line;

  if (!path)
    return NULL;
  if (!name || !*name || strchr (name, '/') || strchr (name, ' ') ||
      strchr (name, '\n')) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "tunnel: '%s' is not a socket name", name ? name : "");
    return NULL;
  }
  req = g_strdup_printf ("reverse %s %s", name, path);
  line = request (t, req, error);
  return line ? ok_path (t, line, error) : NULL;
}

bool
sm_tunnel_state (SmTunnel *t, SmTunnelState *state, GError **error)
{
  g_autofree char *line = request (t, "state", error);
  g_auto(GStrv) w = NULL;

  if (!line)
    return false;
  w = g_strsplit (line, " ", 0);
  if (g_strv_length (w) != 5 || strcmp (w[0], "state") != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "tunnel through '%s': unexpected answer '%s'", t->what,
                 line);
    return false;
  }
  state->up = strcmp (w[1], "up") == 0;
  state->restarts = atoi (w[2]);
  state->bytes = g_ascii_strtoll (w[3], NULL, 10);
  state->pid = atoi (w[4]);
  return true;
}
