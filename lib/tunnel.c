/* libsnapmig — the tunnel of `migrate --tunnel` (lib/tunnel.h): the client
 * that migrate uses, the `snapmig tunnel` process (its transport, the
 * transport's supervision and restart, the control lines, the local
 * listeners of relay mode) and the destination's `snapmig relay`.
 */
#include "tunnel.h"

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
#include "relay.h"
#include "tunnel-private.h"

/* The hello line of `snapmig relay`. */
#define RELAY_HELLO "snapmig-relay 1 "
/* How long a stopped transport or tunnel gets after end of file, then
 * after SIGTERM, before the next step. */
#define STOP_EOF_MS 2000
#define STOP_TERM_MS 2000
/* A single `ssh -O forward` is given this long. */
#define SSH_FORWARD_MS 10000
/* Restarts: the first after 0.5 s, then every second. */
#define RETRY_FIRST_MS 500
#define RETRY_MS 1000

static gint64 now_ms (void) { return g_get_monotonic_time () / 1000; }

static int
ms_left (gint64 deadline)
{
  gint64 d = deadline - now_ms ();

  return d < 0 ? 0 : d > G_MAXINT ? G_MAXINT : (int) d;
}

/* ---- processes ------------------------------------------------------------ */

/* Waits (MS at most) for PID to exit; true when it did (reaped). */
static bool
wait_exit (pid_t pid, int ms, int *status)
{
  gint64 deadline = now_ms () + ms;
  int st;

  for (;;) {
    pid_t r = waitpid (pid, &st, WNOHANG);

    if (r == pid || (r < 0 && errno == ECHILD)) {
      if (status)
        *status = r == pid ? st : 0;
      return true;
    }
    if (now_ms () >= deadline)
      return false;
    g_usleep (10000);
  }
}

/* Ends the child PID whose stdin the caller closed: a bounded wait, then
 * SIGTERM, then SIGKILL, always by PID. */
static void
stop_child (pid_t pid, int eof_ms)
{
  if (pid <= 0)
    return;
  if (eof_ms > 0 && wait_exit (pid, eof_ms, NULL))
    return;
  kill (pid, SIGTERM);
  if (wait_exit (pid, STOP_TERM_MS, NULL))
    return;
  kill (pid, SIGKILL);
  wait_exit (pid, 5000, NULL);
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
static bool
spawn (char *const *argv, pid_t *pid, int *in_fd, int *out_fd, int *err_fd,
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

/* Collected stderr of a child: its last complete (or pending) line. */
typedef struct {
  GString *pending;
  char *last;
  bool echo;                   /* copy each line to our stderr */
} ErrLog;

static void
errlog_feed (ErrLog *l, const char *p, size_t n)
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
static bool
errlog_read (ErrLog *l, int fd)
{
  char buf[4096];
  ssize_t n;

  while ((n = read (fd, buf, sizeof buf)) > 0)
    errlog_feed (l, buf, n);
  return n < 0 && (errno == EAGAIN || errno == EINTR);
}

static const char *
errlog_last (ErrLog *l)
{
  if (l->pending->len)
    return l->pending->str;
  return l->last ? l->last : "";
}

/* Reads one line from FD until DEADLINE, collecting ERR_FD into LOG
 * meanwhile (ERR_FD -1: none).  *LINE without its newline; false with
 * *EOF_SEEN or a timeout or an interruption error. */
static bool
read_line (int fd, GString *buf, int err_fd, ErrLog *log, gint64 deadline,
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
    r = poll (p, err_fd >= 0 ? 2 : 1, ms_left (deadline));
    if (r < 0 && errno == EINTR) {
      if (sm_interrupt_check (error))
        return false;
      continue;
    }
    if (r == 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT, "no answer");
      return false;
    }
    if (err_fd >= 0 && p[1].revents && !errlog_read (log, err_fd))
      err_fd = -1;
    if (p[0].revents) {
      n = read (fd, tmp, sizeof tmp);
      if (n < 0 && (errno == EAGAIN || errno == EINTR))
        continue;
      if (n <= 0) {
        /* what the child said last, now that it is gone */
        if (err_fd >= 0)
          while (poll (&p[1], 1, 200) > 0 && errlog_read (log, err_fd))
            ;
        g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
                     "end of file");
        return false;
      }
      g_string_append_len (buf, tmp, n);
    }
  }
}

static bool
write_all (int fd, const char *p, size_t n)
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
static void
remove_dir (const char *dir)
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

char *
sm_tunnel_dest_dir (const char *state_dir, const char *id)
{
  g_autofree char *name = g_strconcat (id, "-tunnel", NULL);

  return g_build_filename (state_dir, "run", name, NULL);
}

void
sm_tunnel_dest_dir_remove (const char *state_dir, const char *id)
{
  g_autofree char *dir = sm_tunnel_dest_dir (state_dir, id);

  remove_dir (dir);
}

/* Unix sockets left in DIR by an earlier relay (a forward binds its path
 * again; a stale one would refuse it). */
static void
remove_stale_sockets (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d && (name = g_dir_read_name (d)))
    if (g_str_has_suffix (name, ".sock")) {
      g_autofree char *p = g_build_filename (dir, name, NULL);

      (void) unlink (p);
    }
}

static bool
valid_id (const char *id, GError **error)
{
  if (!id || !*id || strchr (id, '/') || strcmp (id, ".") == 0 ||
      strcmp (id, "..") == 0 || strchr (id, '\n')) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "tunnel id '%s' is not a file name", id ? id : "");
    return false;
  }
  return true;
}

bool
sm_relay_dest (const char *state_dir, const char *id, bool hold, int in_fd,
               int out_fd, GError **error)
{
  g_autofree char *dir = NULL;
  g_autofree char *hello = NULL;
  g_autoptr(SmRelay) r = NULL;

  if (!valid_id (id, error))
    return false;
  dir = sm_tunnel_dest_dir (state_dir, id);
  if (g_mkdir_with_parents (dir, 0700) < 0 || chmod (dir, 0700) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "cannot make the tunnel's directory %s: %s", dir,
                 g_strerror (errno));
    return false;
  }
  remove_stale_sockets (dir);
  hello = g_strconcat (RELAY_HELLO, dir, "\n", NULL);
  if (!write_all (out_fd, hello, strlen (hello))) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "relay: cannot write to standard output: %s",
                 g_strerror (errno));
    return false;
  }
  if (hold) {
    /* ssh mode: the directory is all; the ssh session's end is ours */
    for (;;) {
      char buf[4096];
      ssize_t n = read (in_fd, buf, sizeof buf);

      if (n < 0 && errno == EINTR) {
        if (sm_interrupt_check (error))
          return false;
        continue;
      }
      if (n <= 0)
        return true;
    }
  }
  r = sm_relay_new (in_fd, out_fd, false);
  return sm_relay_run (r, error);
}

/* ---- the tunnel process --------------------------------------------------- */

typedef struct {
  char *remote;                /* the destination's path */
  char *local;                 /* LOCAL/NAME */
  int lfd;                     /* relay mode: our listener, else -1 */
} Forward;

typedef struct {
  char *name;
  char *local;                 /* what it reaches here */
  char *remote;                /* REMOTE-DIR/NAME.sock */
} Reverse;

typedef struct {
  const SmTunnelServeOptions *o;
  bool ssh;
  char **ssh_opts, *host, **remote_words;
  char *ctl;                   /* ssh mode: LOCAL/ssh.ctl */
  char *remote_dir;

  /* the transport */
  pid_t pid;
  int t_in, t_out, t_err;      /* its stdin (ours to write), stdout, stderr */
  GString *t_buf;              /* its stdout before the hello line */
  ErrLog t_log;
  SmRelay *relay;
  bool up;
  int restarts;
  int64_t bytes_before;        /* carried by relays that ended */
  gint64 down_since, next_try;
  int tries;
  char *why_down;

  GPtrArray *forwards, *reverses;

  /* the control channel */
  int ctl_in, ctl_out;
  GString *ctl_buf;
  Reverse *pending;            /* a reverse whose LISTEN is unanswered */
  uint32_t pending_id;
} Tun;

static void
forward_free (gpointer p)
{
  Forward *f = p;

  if (f->lfd >= 0)
    close (f->lfd);
  g_free (f->remote);
  g_free (f->local);
  g_free (f);
}

static void
reverse_free (gpointer p)
{
  Reverse *r = p;

  g_free (r->name);
  g_free (r->local);
  g_free (r->remote);
  g_free (r);
}

static void
answer (Tun *t, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
static void
answer (Tun *t, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;
  g_autofree char *line = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  /* one line per answer, whatever the message holds */
  g_strdelimit (msg, "\n", ' ');
  line = g_strconcat (msg, "\n", NULL);
  (void) write_all (t->ctl_out, line, strlen (line));
}

static void
write_pid_file (Tun *t)
{
  g_autofree char *path = g_build_filename (t->o->local_dir, "transport.pid",
                                            NULL);
  g_autofree char *tmp = g_strconcat (path, ".tmp", NULL);
  g_autofree char *text = g_strdup_printf ("%d\n", (int) t->pid);

  if (g_file_set_contents (tmp, text, -1, NULL))
    (void) rename (tmp, path);
}

static void
transport_stop (Tun *t)
{
  if (t->relay) {
    t->bytes_before += sm_relay_bytes (t->relay);
    sm_relay_free (t->relay);     /* closes every relayed connection */
    t->relay = NULL;
  }
  if (t->t_in >= 0)
    close (t->t_in);
  t->t_in = -1;
  stop_child (t->pid, STOP_EOF_MS / 4);
  t->pid = 0;
  if (t->t_out >= 0)
    close (t->t_out);
  if (t->t_err >= 0) {
    errlog_read (&t->t_log, t->t_err);
    close (t->t_err);
  }
  t->t_out = t->t_err = -1;
  g_string_truncate (t->t_buf, 0);
  t->up = false;
}

/* Runs ARGV (an `ssh -O forward`) with a bounded wait; false with its
 * stderr in ERROR. */
static bool
run_bounded (char *const *argv, int ms, GError **error)
{
  g_autofree char *cmd = g_strjoinv (" ", (char **) argv);
  ErrLog log = { g_string_new (NULL), NULL, false };
  gint64 deadline = now_ms () + ms;
  int in_fd, out_fd, err_fd, st = 0;
  pid_t pid;
  bool ok;

  if (!spawn (argv, &pid, &in_fd, &out_fd, &err_fd, error)) {
    g_string_free (log.pending, TRUE);
    return false;
  }
  close (in_fd);
  for (;;) {
    struct pollfd p = { .fd = err_fd, .events = POLLIN };
    int r = poll (&p, 1, ms_left (deadline));

    if (r < 0 && errno == EINTR && !sm_interrupted ())
      continue;
    if (r <= 0 || !errlog_read (&log, err_fd))
      break;
  }
  ok = wait_exit (pid, sm_interrupted () ? 0 : ms_left (deadline), &st);
  if (!ok)
    stop_child (pid, 0);
  close (out_fd);
  close (err_fd);
  if (!ok)
    g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                 "'%s' did not finish within %d s", cmd, ms / 1000);
  else if (!WIFEXITED (st) || WEXITSTATUS (st) != 0) {
    ok = false;
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED, "'%s' failed: %s", cmd,
                 *errlog_last (&log) ? errlog_last (&log)
                 : "no message");
  }
  g_free (log.last);
  g_string_free (log.pending, TRUE);
  return ok;
}

static bool
ssh_forward (Tun *t, const char *flag, const char *from, const char *to,
             GError **error)
{
  g_autofree char *spec = g_strconcat (from, ":", to, NULL);
  g_auto(GStrv) argv = sm_tunnel_ssh_forward_argv (t->o->dest_argv[0],
                                                   t->ssh_opts, t->host,
                                                   t->ctl, flag, spec);

  return run_bounded (argv, SSH_FORWARD_MS, error);
}

/* Starts the transport and adds every forward and reverse again; true
 * when it is up.  Waits until DEADLINE at most. */
static bool
transport_start (Tun *t, gint64 deadline, GError **error)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *line = NULL;
  g_auto(GStrv) master = NULL;
  GError *err = NULL;
  guint i;

  if (t->ssh) {
    (void) unlink (t->ctl);
    master = sm_tunnel_ssh_master_argv (t->o->dest_argv[0], t->ssh_opts,
                                        t->host, t->remote_words, t->ctl,
                                        t->o->id, t->o->dest_extra);
    for (i = 0; master[i]; i++)
      g_ptr_array_add (argv, g_strdup (master[i]));
  } else {
    for (i = 0; t->o->dest_argv[i]; i++)
      g_ptr_array_add (argv, g_strdup (t->o->dest_argv[i]));
    g_ptr_array_add (argv, g_strdup ("relay"));
    g_ptr_array_add (argv, g_strconcat ("--id=", t->o->id, NULL));
    for (i = 0; t->o->dest_extra && t->o->dest_extra[i]; i++)
      g_ptr_array_add (argv, g_strdup (t->o->dest_extra[i]));
  }
  g_ptr_array_add (argv, NULL);
  if (sm_debug_enabled ()) {
    g_autofree char *cmd = g_strjoinv (" ", (char **) argv->pdata);

    sm_debug ("tunnel", "starting the transport: %s", cmd);
  }
  if (!spawn ((char *const *) argv->pdata, &t->pid, &t->t_in, &t->t_out,
              &t->t_err, error))
    return false;
  if (!read_line (t->t_out, t->t_buf, t->t_err, &t->t_log, deadline, &line,
                  &err) ||
      !g_str_has_prefix (line, RELAY_HELLO)) {
    const char *said = errlog_last (&t->t_log);

    if (err && err->code == SM_ERROR_INTERRUPTED) {
      g_propagate_error (error, err);
    } else {
      g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
                   "the transport '%s' did not start: %s",
                   (char *) g_ptr_array_index (argv, 0),
                   *said ? said : err ? err->message
                   : line ? line : "no hello line");
      g_clear_error (&err);
    }
    transport_stop (t);
    return false;
  }
  if (!t->remote_dir)
    t->remote_dir = g_strdup (line + strlen (RELAY_HELLO));
  else if (strcmp (t->remote_dir, line + strlen (RELAY_HELLO)) != 0)
    g_printerr ("snapmig: warning: tunnel: the destination's directory is "
                "now %s, not %s\n", line + strlen (RELAY_HELLO),
                t->remote_dir);
  if (t->ssh) {
    for (i = 0; i < t->forwards->len; i++) {
      Forward *f = g_ptr_array_index (t->forwards, i);

      if (!ssh_forward (t, "-L", f->local, f->remote, error)) {
        transport_stop (t);
        return false;
      }
    }
    for (i = 0; i < t->reverses->len; i++) {
      Reverse *r = g_ptr_array_index (t->reverses, i);

      if (!ssh_forward (t, "-R", r->remote, r->local, error)) {
        transport_stop (t);
        return false;
      }
    }
  } else {
    /* the hello line was the last of the text: frames follow */
    t->relay = sm_relay_new (t->t_out, t->t_in, true);
    g_assert (t->t_buf->len == 0 || !"frames before the relay was asked");
    for (i = 0; i < t->forwards->len; i++) {
      Forward *f = g_ptr_array_index (t->forwards, i);

      sm_relay_add_listener (t->relay, f->lfd, f->remote);
    }
    for (i = 0; i < t->reverses->len; i++) {
      Reverse *r = g_ptr_array_index (t->reverses, i);

      sm_relay_listen (t->relay, r->remote, r->local);
    }
  }
  t->up = true;
  write_pid_file (t);
  return true;
}

/* The transport ended: everything relayed is closed (QEMU's clients see
 * it and reconnect later), the next start is in 0.5 s. */
static void
transport_down (Tun *t, const char *why)
{
  transport_stop (t);
  g_free (t->why_down);
  t->why_down = g_strdup (why);
  t->down_since = now_ms ();
  t->next_try = t->down_since + RETRY_FIRST_MS;
  t->tries = 0;
  g_printerr ("snapmig: tunnel: the transport ended (%s); restarting it\n",
              why);
  if (t->pending) {
    /* recorded: the next transport listens */
    answer (t, "ok %s", t->pending->remote);
    t->pending = NULL;
  }
}

/* LOCAL/BASE for the destination's REMOTE, the same for the same REMOTE;
 * another REMOTE with the same base name gets N-BASE. */
static char *
forward_local_path (Tun *t, const char *remote)
{
  g_autofree char *base = g_path_get_basename (remote);

  for (int n = 0;; n++) {
    g_autofree char *name = n ? g_strdup_printf ("%d-%s", n, base)
                              : g_strdup (base);
    char *path = g_build_filename (t->o->local_dir, name, NULL);
    bool taken = strcmp (name, "ssh.ctl") == 0 ||
                 strcmp (name, "transport.pid") == 0 ||
                 strcmp (name, "tunnel.log") == 0;

    for (guint i = 0; !taken && i < t->forwards->len; i++)
      taken = strcmp (((Forward *) g_ptr_array_index (t->forwards, i))->local,
                      path) == 0;
    if (!taken)
      return path;
    g_free (path);
  }
}

static void
handle_forward (Tun *t, const char *remote)
{
  g_autoptr(GError) err = NULL;
  Forward *f;
  guint i;

  if (remote[0] != '/') {
    answer (t, "error forward: '%s' is not an absolute path", remote);
    return;
  }
  for (i = 0; i < t->forwards->len; i++) {
    f = g_ptr_array_index (t->forwards, i);
    if (strcmp (f->remote, remote) == 0) {
      answer (t, "ok %s", f->local);
      return;
    }
  }
  f = g_new0 (Forward, 1);
  f->remote = g_strdup (remote);
  f->local = forward_local_path (t, remote);
  f->lfd = -1;
  if (!t->ssh) {
    f->lfd = sm_relay_unix_listen (f->local, &err);
    if (f->lfd >= 0 && t->relay)
      sm_relay_add_listener (t->relay, f->lfd, f->remote);
  } else if (t->up)
    ssh_forward (t, "-L", f->local, f->remote, &err);
  if (err) {
    answer (t, "error forward %s: %s", remote, err->message);
    forward_free (f);
    return;
  }
  g_ptr_array_add (t->forwards, f);
  answer (t, "ok %s", f->local);
}

static void
handle_reverse (Tun *t, const char *args)
{
  g_autoptr(GError) err = NULL;
  const char *sp = strchr (args, ' ');
  g_autofree char *name = sp ? g_strndup (args, sp - args) : NULL;
  Reverse *r;
  guint i;

  if (!name || !*name || strchr (name, '/') || sp[1] != '/') {
    answer (t, "error reverse: expected 'reverse NAME /LOCAL-PATH'");
    return;
  }
  for (i = 0; i < t->reverses->len; i++) {
    r = g_ptr_array_index (t->reverses, i);
    if (strcmp (r->name, name) == 0) {
      if (strcmp (r->local, sp + 1) != 0) {
        answer (t, "error reverse %s: already reaches %s", name, r->local);
        return;
      }
      answer (t, "ok %s", r->remote);
      return;
    }
  }
  r = g_new0 (Reverse, 1);
  r->name = g_steal_pointer (&name);
  r->local = g_strdup (sp + 1);
  r->remote = g_strdup_printf ("%s/%s.sock", t->remote_dir, r->name);
  if (t->ssh && t->up && !ssh_forward (t, "-R", r->remote, r->local, &err)) {
    answer (t, "error reverse %s: %s", r->name, err->message);
    reverse_free (r);
    return;
  }
  g_ptr_array_add (t->reverses, r);
  if (!t->ssh && t->relay) {
    /* answered when the relay says it listens */
    t->pending = r;
    t->pending_id = sm_relay_listen (t->relay, r->remote, r->local);
    return;
  }
  answer (t, "ok %s", r->remote);
}

static void
check_pending (Tun *t)
{
  g_autofree char *msg = NULL;
  int res;

  if (!t->pending || !t->relay)
    return;
  res = sm_relay_listen_result (t->relay, t->pending_id, &msg);
  if (res == 0)
    return;
  if (res > 0)
    answer (t, "ok %s", t->pending->remote);
  else {
    answer (t, "error reverse %s: %s", t->pending->name,
            msg ? msg : "refused");
    g_ptr_array_remove (t->reverses, t->pending);
  }
  t->pending = NULL;
}

static void
handle_line (Tun *t, const char *line)
{
  if (g_str_has_prefix (line, "forward "))
    handle_forward (t, line + 8);
  else if (g_str_has_prefix (line, "reverse "))
    handle_reverse (t, line + 8);
  else if (strcmp (line, "state") == 0)
    answer (t, "state %s %d %" G_GINT64_FORMAT " %d", t->up ? "up" : "down",
            t->restarts, t->ssh ? -1 : t->bytes_before +
            (t->relay ? sm_relay_bytes (t->relay) : 0), (int) t->pid);
  else
    answer (t, "error unknown request '%s'", line);
}

/* Reads the control channel; false at its end. */
static bool
ctl_read (Tun *t)
{
  char buf[4096];
  ssize_t n = read (t->ctl_in, buf, sizeof buf);

  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return true;
  if (n <= 0)
    return false;
  g_string_append_len (t->ctl_buf, buf, n);
  return true;
}

/* Handles the whole lines read, one at a time: a reverse waiting for its
 * relay holds the next. */
static void
ctl_handle (Tun *t)
{
  char *nl;

  while (!t->pending && (nl = memchr (t->ctl_buf->str, '\n',
                                      t->ctl_buf->len))) {
    g_autofree char *line = g_strndup (t->ctl_buf->str, nl - t->ctl_buf->str);

    g_string_erase (t->ctl_buf, 0, nl - t->ctl_buf->str + 1);
    handle_line (t, line);
  }
}

static void
tun_cleanup (Tun *t)
{
  transport_stop (t);
  g_ptr_array_free (t->forwards, TRUE);     /* closes the listeners */
  g_ptr_array_free (t->reverses, TRUE);
  remove_dir (t->o->local_dir);
  g_strfreev (t->ssh_opts);
  g_strfreev (t->remote_words);
  g_free (t->host);
  g_free (t->ctl);
  g_free (t->remote_dir);
  g_free (t->why_down);
  g_string_free (t->t_buf, TRUE);
  g_string_free (t->ctl_buf, TRUE);
  g_string_free (t->t_log.pending, TRUE);
  g_free (t->t_log.last);
}

/* One restart attempt when it is time; false (ERROR set) once the link
 * timeout passed. */
static bool
maybe_restart (Tun *t, GError **error)
{
  g_autoptr(GError) err = NULL;
  gint64 give_up = t->down_since + t->o->link_timeout_ms;

  if (now_ms () < t->next_try)
    return true;
  t->tries++;
  /* one attempt may take what is left of the link timeout (at least 1 s:
   * an ssh that connects needs that much) */
  if (transport_start (t, MAX (MIN (give_up, now_ms () + 30000),
                               now_ms () + 1000), &err)) {
    t->restarts++;
    g_printerr ("snapmig: tunnel: the transport is back (PID %d)\n",
                (int) t->pid);
    return true;
  }
  if (err->code == SM_ERROR_INTERRUPTED) {
    g_propagate_error (error, g_steal_pointer (&err));
    return false;
  }
  g_free (t->why_down);
  t->why_down = g_strdup (err->message);
  if (now_ms () >= give_up) {
    g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
                 "the tunnel's transport was down for more than %d ms: %s",
                 t->o->link_timeout_ms, t->why_down);
    return false;
  }
  t->next_try = now_ms () + (t->tries == 1 ? RETRY_FIRST_MS : RETRY_MS);
  return true;
}

bool
sm_tunnel_serve (const SmTunnelServeOptions *o, int ctl_in, int ctl_out,
                 GError **error)
{
  Tun t = { .o = o, .t_in = -1, .t_out = -1, .t_err = -1,
            .ctl_in = ctl_in, .ctl_out = ctl_out };
  g_autofree struct pollfd *fds = NULL;
  size_t cap = 0;
  bool ok = true;

  if (!valid_id (o->id, error))
    return false;
  if (!o->dest_argv || !o->dest_argv[0]) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "tunnel: no destination command");
    return false;
  }
  if (g_mkdir_with_parents (o->local_dir, 0700) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "cannot make the tunnel's directory %s: %s", o->local_dir,
                 g_strerror (errno));
    return false;
  }
  t.ssh = sm_tunnel_ssh_split (o->dest_argv, &t.ssh_opts, &t.host,
                               &t.remote_words);
  t.ctl = g_build_filename (o->local_dir, "ssh.ctl", NULL);
  t.forwards = g_ptr_array_new_with_free_func (forward_free);
  t.reverses = g_ptr_array_new_with_free_func (reverse_free);
  t.t_buf = g_string_new (NULL);
  t.ctl_buf = g_string_new (NULL);
  t.t_log.pending = g_string_new (NULL);
  t.t_log.echo = true;
  fcntl (ctl_in, F_SETFL, fcntl (ctl_in, F_GETFL) | O_NONBLOCK);

  if (!transport_start (&t, now_ms () + MAX (o->link_timeout_ms, 10000),
                        error)) {
    tun_cleanup (&t);
    return false;
  }
  answer (&t, "ready %s %s", t.ssh ? "ssh" : "relay", t.remote_dir);

  for (;;) {
    size_t want = 3 + (t.relay ? sm_relay_nfds_max (t.relay) : 0);
    size_t n = 0, nr = 0;
    int timeout = -1, r;
    bool ctl_eof = false;

    if (want > cap) {
      cap = want * 2;
      fds = g_renew (struct pollfd, fds, cap);
    }
    fds[n++] = (struct pollfd) { .fd = ctl_in, .events = t.pending ? 0
                                 : POLLIN };
    fds[n++] = (struct pollfd) { .fd = t.t_err, .events = POLLIN };
    fds[n++] = (struct pollfd) { .fd = t.ssh ? t.t_out : -1,
                                 .events = POLLIN };
    if (t.relay)
      nr = sm_relay_pollfds (t.relay, fds + n, cap - n);
    if (!t.up)
      timeout = ms_left (t.next_try);
    r = poll (fds, n + nr, timeout);
    if (r < 0 && errno != EINTR) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "tunnel: poll: %s",
                   g_strerror (errno));
      ok = false;
      break;
    }
    if (sm_interrupted ())
      break;                   /* SIGTERM, SIGINT: the same as the end */
    if (r < 0)
      continue;
    if (fds[1].revents && !errlog_read (&t.t_log, t.t_err)) {
      close (t.t_err);
      t.t_err = -1;
    }
    if (t.relay) {
      GError *err = NULL;

      if (!sm_relay_dispatch (t.relay, fds + n, nr, &err)) {
        g_autofree char *why = g_strdup_printf (
          "%s%s%s", err ? err->message : "the relay's pipe closed",
          *errlog_last (&t.t_log) ? ": " : "", errlog_last (&t.t_log));

        g_clear_error (&err);
        transport_down (&t, why);
      } else
        check_pending (&t);
    }
    if (t.ssh && t.up && fds[2].revents) {
      char buf[512];
      ssize_t got = read (t.t_out, buf, sizeof buf);

      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
        g_autofree char *why = g_strdup_printf (
          "the ssh master exited%s%s", *errlog_last (&t.t_log) ? ": " : "",
          errlog_last (&t.t_log));

        transport_down (&t, why);
      }
    }
    if (fds[0].revents && !ctl_read (&t))
      ctl_eof = true;
    ctl_handle (&t);
    if (ctl_eof)
      break;
    if (!t.up && !maybe_restart (&t, error)) {
      ok = sm_interrupted () != 0;
      if (ok)
        g_clear_error (error);
      break;
    }
  }
  tun_cleanup (&t);
  return ok;
}

/* ---- the client ----------------------------------------------------------- */

struct SmTunnel {
  pid_t pid;
  int ctl;                     /* socket: the tunnel's stdin and stdout */
  int err_fd;
  ErrLog log;
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
  stop_child (t->pid, STOP_EOF_MS);
  t->pid = 0;
  if (t->local_dir && g_file_test (t->local_dir, G_FILE_TEST_IS_DIR))
    remove_dir (t->local_dir);
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
  if (gone && t->pid > 0 && wait_exit (t->pid, 1000, NULL))
    t->pid = 0;
  errlog_read (&t->log, t->err_fd);
}

/* The tunnel's last word ("error MESSAGE" on its stderr), for errors. */
static const char *
tunnel_said (SmTunnel *t)
{
  const char *s = errlog_last (&t->log);

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
  if (!valid_id (id, error))
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
    execv (self_exe, (char **) argv->pdata);
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

  if (!read_line (t->ctl, t->buf, -1, NULL, now_ms () + t->timeout_ms,
                  &line, &err)) {
    tunnel_log_read (t, err->code != SM_ERROR_TIMEOUT);
    if (err->code == SM_ERROR_TIMEOUT)
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "the tunnel through '%s' was not up within %d s "
                   "(link timeout %d ms): %s", t->what, t->timeout_ms / 1000,
                   link_timeout_ms, errlog_last (&t->log));
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

  if (t->dead || !write_all (t->ctl, msg, strlen (msg)) ||
      !read_line (t->ctl, t->buf, -1, NULL, now_ms () + t->timeout_ms,
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
  char *line;

  if (!path)
    return NULL;
  req = g_strconcat ("forward ", path, NULL);
  line = request (t, req, error);
  return line ? ok_path (t, line, error) : NULL;
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
