/* libsnapmig — the tunnel of `migrate --tunnel` (lib/tunnel.h): the
 * `snapmig tunnel` process (its transport, the transport's supervision and
 * restart, the control lines, the local listeners of relay mode) and the
 * destination's `snapmig relay`.  Its client is lib/tunnel-client.c.
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
/* A single `ssh -O forward` is given this long. */
#define SSH_FORWARD_MS 10000
/* Restarts: the first after 0.5 s, then every second. */
#define RETRY_FIRST_MS 500
#define RETRY_MS 1000


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

  sm_tunnel_remove_dir (dir);
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

bool
sm_relay_dest (const char *state_dir, const char *id, bool hold, int in_fd,
               int out_fd, GError **error)
{
  g_autofree char *dir = NULL;
  g_autofree char *hello = NULL;
  g_autoptr(SmRelay) r = NULL;

  if (!sm_tunnel_valid_id (id, error))
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
  if (!sm_tunnel_write_all (out_fd, hello, strlen (hello))) {
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
  char *cipher_opt;            /* ssh mode: our cipher order, or NULL */
  char *remote_dir;

  /* the transport */
  pid_t pid;
  int t_in, t_out, t_err;      /* its stdin (ours to write), stdout, stderr */
  GString *t_buf;              /* its stdout before the hello line */
  SmTunnelErrLog t_log;
  SmRelay *relay;
  bool starting;               /* spawned, its hello line not read yet */
  gint64 start_deadline;
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
  (void) sm_tunnel_write_all (t->ctl_out, line, strlen (line));
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
  sm_tunnel_stop_child (t->pid, STOP_EOF_MS / 4);
  t->pid = 0;
  if (t->t_out >= 0)
    close (t->t_out);
  if (t->t_err >= 0) {
    sm_tunnel_errlog_read (&t->t_log, t->t_err);
    close (t->t_err);
  }
  t->t_out = t->t_err = -1;
  g_string_truncate (t->t_buf, 0);
  t->up = t->starting = false;
}

/* Runs ARGV (an `ssh -O forward`) with a bounded wait; false with its
 * stderr in ERROR. */
static bool
run_bounded (char *const *argv, int ms, GError **error)
{
  g_autofree char *cmd = g_strjoinv (" ", (char **) argv);
  SmTunnelErrLog log = { g_string_new (NULL), NULL, false };
  gint64 deadline = sm_tunnel_now_ms () + ms;
  int in_fd, out_fd, err_fd, st = 0;
  pid_t pid;
  bool ok;

  if (!sm_tunnel_spawn (argv, &pid, &in_fd, &out_fd, &err_fd, error)) {
    g_string_free (log.pending, TRUE);
    return false;
  }
  close (in_fd);
  for (;;) {
    struct pollfd p = { .fd = err_fd, .events = POLLIN };
    int r = poll (&p, 1, sm_tunnel_ms_left (deadline));

    if (r < 0 && errno == EINTR && !sm_interrupted ())
      continue;
    if (r <= 0 || !sm_tunnel_errlog_read (&log, err_fd))
      break;
  }
  ok = sm_tunnel_wait_exit (pid, sm_interrupted () ? 0 : sm_tunnel_ms_left (deadline), &st);
  if (!ok)
    sm_tunnel_stop_child (pid, 0);
  close (out_fd);
  close (err_fd);
  if (!ok)
    g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                 "'%s' did not finish within %d s", cmd, ms / 1000);
  else if (!WIFEXITED (st) || WEXITSTATUS (st) != 0) {
    ok = false;
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED, "'%s' failed: %s", cmd,
                 *sm_tunnel_errlog_last (&log) ? sm_tunnel_errlog_last (&log)
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

/* Starts the transport: it is "starting" until its hello line comes
 * (transport_hello) or DEADLINE passes; the loop serves the control
 * channel meanwhile. */
static bool
transport_spawn (Tun *t, gint64 deadline, GError **error)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_auto(GStrv) master = NULL;
  guint i;

  if (t->ssh) {
    (void) unlink (t->ctl);
    master = sm_tunnel_ssh_master_argv (t->o->dest_argv[0], t->ssh_opts,
                                        t->host, t->remote_words, t->ctl,
                                        t->o->id, t->o->dest_extra,
                                        t->cipher_opt);
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
  if (!sm_tunnel_spawn ((char *const *) argv->pdata, &t->pid, &t->t_in, &t->t_out,
              &t->t_err, error)) {
    g_prefix_error (error, "the transport '%s' did not start: ",
                    t->o->dest_argv[0]);
    return false;
  }
  fcntl (t->t_out, F_SETFL, fcntl (t->t_out, F_GETFL) | O_NONBLOCK);
  t->starting = true;
  t->start_deadline = deadline;
  return true;
}

/* The transport said LINE: its hello ("snapmig-relay 1 DIR"); adds every
 * forward and reverse again.  True when it is up; false (stopped) with
 * ERROR. */
static bool
transport_hello (Tun *t, const char *line, GError **error)
{
  guint i;

  t->starting = false;
  if (!g_str_has_prefix (line, RELAY_HELLO)) {
    g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
                 "the transport '%s' said '%s', not '%s...' (is snapmig "
                 "installed on the destination?)", t->o->dest_argv[0], line,
                 RELAY_HELLO);
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
    /* the hello line was the last of the text: frames follow (the relay
     * sends none before it is asked) */
    t->relay = sm_relay_new (t->t_out, t->t_in, true);
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

/* Reads the starting transport's stdout: 0 nothing yet, 1 up, -1 failed
 * (stopped; ERROR set). */
static int
transport_read_hello (Tun *t, GError **error)
{
  char buf[512];
  ssize_t n = read (t->t_out, buf, sizeof buf);
  char *nl;

  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return 0;
  if (n <= 0) {
    if (t->t_err >= 0) {
      struct pollfd p = { .fd = t->t_err, .events = POLLIN };

      /* its last words, when it is gone */
      while (poll (&p, 1, 200) > 0 && sm_tunnel_errlog_read (&t->t_log, t->t_err))
        ;
    }
    g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
                 "the transport '%s' did not start: %s", t->o->dest_argv[0],
                 *sm_tunnel_errlog_last (&t->t_log) ? sm_tunnel_errlog_last (&t->t_log)
                 : "it exited before its first line");
    transport_stop (t);
    return -1;
  }
  g_string_append_len (t->t_buf, buf, n);
  nl = memchr (t->t_buf->str, '\n', t->t_buf->len);
  if (nl) {
    g_autofree char *line = g_strndup (t->t_buf->str, nl - t->t_buf->str);

    g_string_truncate (t->t_buf, 0);
    return transport_hello (t, line, error) ? 1 : -1;
  }
  if (t->t_buf->len > 4096) {
    g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
                 "the transport '%s' said too much before its hello line",
                 t->o->dest_argv[0]);
    transport_stop (t);
    return -1;
  }
  return 0;
}

/* The transport ended: everything relayed is closed (QEMU's clients see
 * it and reconnect later), the next start is in 0.5 s. */
static void
transport_down (Tun *t, const char *why)
{
  transport_stop (t);
  g_free (t->why_down);
  t->why_down = g_strdup (why);
  t->down_since = sm_tunnel_now_ms ();
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
  sm_tunnel_remove_dir (t->o->local_dir);
  g_strfreev (t->ssh_opts);
  g_free (t->cipher_opt);
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

/* An attempt failed with ERR (consumed): the next in 0.5 s, then every
 * second; false (ERROR set) once the link timeout passed. */
static bool
attempt_failed (Tun *t, GError *err, GError **error)
{
  g_free (t->why_down);
  t->why_down = g_strdup (err->message);
  g_error_free (err);
  if (sm_tunnel_now_ms () >= t->down_since + t->o->link_timeout_ms) {
    g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
                 "the tunnel's transport was down for more than %d ms: %s",
                 t->o->link_timeout_ms, t->why_down);
    return false;
  }
  t->next_try = sm_tunnel_now_ms () + (t->tries == 1 ? RETRY_FIRST_MS : RETRY_MS);
  return true;
}

/* The transport's part of a round: its stdout while it starts (ssh mode:
 * also while up, for its end), the relay's sockets, the restart when it
 * is due.  FIRST: the first start, whose failure is final.  False (ERROR
 * set) when the tunnel gives up. */
static bool
transport_round (Tun *t, const struct pollfd *out, const struct pollfd *rfds,
                 size_t nr, bool *first, GError **error)
{
  GError *err = NULL;
  int res = 0;

  if (t->relay && !sm_relay_dispatch (t->relay, rfds, nr, &err)) {
    g_autofree char *why = g_strdup_printf (
      "%s%s%s", err ? err->message : "the relay's pipe closed",
      *sm_tunnel_errlog_last (&t->t_log) ? ": " : "", sm_tunnel_errlog_last (&t->t_log));

    g_clear_error (&err);
    transport_down (t, why);
  } else if (t->relay)
    check_pending (t);
  if (t->ssh && t->up && out->revents) {
    char buf[512];
    ssize_t got = read (t->t_out, buf, sizeof buf);

    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
      g_autofree char *why = g_strdup_printf (
        "the ssh master exited%s%s", *sm_tunnel_errlog_last (&t->t_log) ? ": " : "",
        sm_tunnel_errlog_last (&t->t_log));

      transport_down (t, why);
    }
  }
  if (t->starting && out->revents)
    res = transport_read_hello (t, &err);
  if (t->starting && sm_tunnel_now_ms () >= t->start_deadline) {
    g_set_error (&err, SM_ERROR, SM_ERROR_TIMEOUT,
                 "the transport '%s' did not say it was up in time%s%s",
                 t->o->dest_argv[0], *sm_tunnel_errlog_last (&t->t_log) ? ": " : "",
                 sm_tunnel_errlog_last (&t->t_log));
    transport_stop (t);
    res = -1;
  }
  if (res > 0 && *first) {
    *first = false;
    answer (t, "ready %s %s", t->ssh ? "ssh" : "relay", t->remote_dir);
  } else if (res > 0) {
    t->restarts++;
    g_printerr ("snapmig: tunnel: the transport is back (PID %d)\n",
                (int) t->pid);
  }
  if (res < 0 && *first) {
    g_propagate_error (error, err);
    return false;
  }
  if (res < 0 && !attempt_failed (t, err, error))
    return false;
  if (!t->up && !t->starting && sm_tunnel_now_ms () >= t->next_try) {
    /* one attempt may take what is left of the link timeout (at least 1 s:
     * an ssh that connects needs that much) */
    gint64 give_up = t->down_since + t->o->link_timeout_ms;

    t->tries++;
    if (!transport_spawn (t, MAX (MIN (give_up, sm_tunnel_now_ms () + 30000),
                                  sm_tunnel_now_ms () + 1000), &err) &&
        !attempt_failed (t, err, error))
      return false;
  }
  return true;
}

bool
sm_tunnel_serve (const SmTunnelServeOptions *o, int ctl_in, int ctl_out,
                 GError **error)
{
  Tun t = { .o = o, .t_in = -1, .t_out = -1, .t_err = -1,
            .ctl_in = ctl_in, .ctl_out = ctl_out };
  g_autofree struct pollfd *fds = NULL;
  bool ok = true, first = true;
  size_t cap = 0;

  if (!sm_tunnel_valid_id (o->id, error))
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
  if (t.ssh)
    t.cipher_opt = sm_tunnel_ssh_cipher_opt (o->dest_argv[0], t.ssh_opts,
                                             t.host);
  sm_debug ("tunnel", "ssh cipher order: %s",
            t.cipher_opt ? t.cipher_opt : "the user's configuration's");
  t.forwards = g_ptr_array_new_with_free_func (forward_free);
  t.reverses = g_ptr_array_new_with_free_func (reverse_free);
  t.t_buf = g_string_new (NULL);
  t.ctl_buf = g_string_new (NULL);
  t.t_log.pending = g_string_new (NULL);
  t.t_log.echo = true;
  fcntl (ctl_in, F_SETFL, fcntl (ctl_in, F_GETFL) | O_NONBLOCK);

  if (!transport_spawn (&t, sm_tunnel_now_ms () + MAX (o->link_timeout_ms, 10000),
                        error)) {
    tun_cleanup (&t);
    return false;
  }
  for (;;) {
    size_t want = 3 + (t.relay ? sm_relay_nfds_max (t.relay) : 0);
    size_t n = 0, nr = 0;
    int timeout = -1, r;
    bool ctl_eof = false;

    if (want > cap) {
      cap = want * 2;
      fds = g_renew (struct pollfd, fds, cap);
    }
    /* no request before "ready" (only its end), none while a reverse
     * waits for the relay */
    fds[n++] = (struct pollfd) { .fd = ctl_in,
                                 .events = first || t.pending ? 0 : POLLIN };
    fds[n++] = (struct pollfd) { .fd = t.t_err, .events = POLLIN };
    fds[n++] = (struct pollfd) { .fd = t.starting || (t.ssh && t.up)
                                 ? t.t_out : -1, .events = POLLIN };
    if (t.relay)
      nr = sm_relay_pollfds (t.relay, fds + n, cap - n);
    if (t.starting)
      timeout = sm_tunnel_ms_left (t.start_deadline);
    else if (!t.up)
      timeout = sm_tunnel_ms_left (t.next_try);
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
    if (fds[1].revents && !sm_tunnel_errlog_read (&t.t_log, t.t_err)) {
      close (t.t_err);
      t.t_err = -1;
    }
    if (!transport_round (&t, &fds[2], fds + n, nr, &first, error)) {
      ok = false;
      break;
    }
    if (fds[0].revents && (first ? (fds[0].revents & (POLLHUP | POLLERR))
                           : !ctl_read (&t)))
      ctl_eof = true;
    if (!first)
      ctl_handle (&t);
    if (ctl_eof)
      break;
  }
  tun_cleanup (&t);
  return ok;
}

/* ---- the client ----------------------------------------------------------- */

