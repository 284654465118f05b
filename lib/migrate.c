/* libsnapmig — the whole cross-host migration (begin, prepare, perform,
 * finish, confirm) with the destination's phases run through a command,
 * and recover's part for the source (lib/migrate.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "blockjob.h"
#include "interrupt.h"
#include "json-util.h"
#include "migrate-private.h"
#include "qemu-proc.h"
#include "tunnel.h"

/* One destination phase: its process, the cookie it reads, what it says.
 * Its stderr lines that are JSON events ({"event": ...}, the phase
 * commands' --json progress) are passed on to the caller's event
 * function as they come; the others are kept for the error message. */
typedef struct {
  GPid pid;
  int in_fd;                   /* kept open for a phase that watches it */
  int out_fd, err_fd;
  GString *out;
  GString *err;
  GString *line;               /* stderr's unfinished line */
  int code;                    /* the code of its {"event":"error"} */
  int status;
  bool signalled;
  bool done;
  bool up;                     /* it announced its phase: it runs */
} DestProc;

static void
dest_proc_free (DestProc *d)
{
  if (!d)
    return;
  if (d->in_fd >= 0)
    close (d->in_fd);
  if (d->out_fd >= 0)
    close (d->out_fd);
  if (d->err_fd >= 0)
    close (d->err_fd);
  if (!d->done) {
    kill (d->pid, SIGKILL);
    waitpid (d->pid, NULL, 0);
  }
  g_string_free (d->out, true);
  g_string_free (d->err, true);
  g_string_free (d->line, true);
  g_free (d);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DestProc, dest_proc_free)

/* Writes TEXT (LEN bytes) to the pipe FD of a destination phase; a reader
 * that went away ends the write (EPIPE: its exit says why) without a
 * SIGPIPE.  The signal is blocked in this thread while it writes and one it
 * raised is taken back, so that the library never changes the process's
 * signal dispositions.  True when all of TEXT was written. */
static bool
write_to_phase (int fd, const char *text, size_t len)
{
  struct timespec zero = { 0, 0 };
  sigset_t pipe_set, old, pending;
  bool was_pending;
  size_t written = 0;

  sigemptyset (&pipe_set);
  sigaddset (&pipe_set, SIGPIPE);
  pthread_sigmask (SIG_BLOCK, &pipe_set, &old);
  sigpending (&pending);
  was_pending = sigismember (&pending, SIGPIPE);
  while (written < len) {
    ssize_t k = write (fd, text + written, len - written);

    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    written += (size_t) k;
  }
  sigpending (&pending);
  if (!was_pending && sigismember (&pending, SIGPIPE))
    sigtimedwait (&pipe_set, NULL, &zero);
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  return written == len;
}

/* Starts DEST_ARGV PHASE DEST_EXTRA... EXTRA... and writes COOKIE to its
 * stdin (a phase reads its cookie first thing), then closes it — unless
 * KEEP_STDIN: then it stays open until D is waited for or freed, so that
 * the phase sees this process go away (--watch-stdin). */
static DestProc *
dest_start (const char *const *dest_argv, const char *phase,
            const char *const *dest_extra, const char *const *extra,
            const char *cookie, bool keep_stdin, GError **error)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  DestProc *d;
  int in_fd = -1;
  size_t len = strlen (cookie);
  GError *e = NULL;

  for (const char *const *a = dest_argv; *a; a++)
    g_ptr_array_add (argv, (char *) *a);
  g_ptr_array_add (argv, (char *) phase);
  for (const char *const *a = dest_extra; a && *a; a++)
    g_ptr_array_add (argv, (char *) *a);
  for (const char *const *a = extra; a && *a; a++)
    g_ptr_array_add (argv, (char *) *a);
  g_ptr_array_add (argv, NULL);
  d = g_new0 (DestProc, 1);
  d->out = g_string_new (NULL);
  d->err = g_string_new (NULL);
  d->line = g_string_new (NULL);
  d->in_fd = d->out_fd = d->err_fd = -1;
  d->code = SM_ERROR_FAILED;
  if (!g_spawn_async_with_pipes (NULL, (char **) argv->pdata, NULL,
                                 G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD,
                                 NULL, NULL, &d->pid, &in_fd, &d->out_fd,
                                 &d->err_fd, &e)) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "cannot run the destination's snapmig (%s): %s",
                 dest_argv[0], e->message);
    g_error_free (e);
    d->done = true;
    dest_proc_free (d);
    return NULL;
  }
  write_to_phase (in_fd, cookie, len);   /* a failure: its exit says why */
  if (keep_stdin)
    d->in_fd = in_fd;
  else
    close (in_fd);
  fcntl (d->out_fd, F_SETFL, O_NONBLOCK);
  fcntl (d->err_fd, F_SETFL, O_NONBLOCK);
  return d;
}

static void
relay_line (DestProc *d, const char *line, const SmMigOptions *o)
{
  GString *keep = d->err;

  if (line[0] == '{') {
    json_object *ev = json_tokener_parse (line);

    if (ev && json_object_is_type (ev, json_type_object) &&
        json_object_object_get (ev, "event")) {
      const char *name = json_object_get_string (json_object_object_get (ev, "event"));

      /* the phases are the orchestrator's to announce, and so is the
       * result; a failing phase's code (its result's error, or an older
       * snapmig's "error" event) is kept for the error snapmig reports */
      if (g_strcmp0 (name, "error") == 0 || g_strcmp0 (name, "result") == 0) {
        json_object *e = json_object_object_get (ev, "error");

        if (e)
          d->code = sm_error_code_from_name (json_object_get_string (
            json_object_object_get (e, "code")));
      }
      else if (g_strcmp0 (name, "phase") == 0)
        d->up = true;
      else if (o->event)
        o->event (ev, o->opaque);
      json_object_put (ev);
      return;
    }
    if (ev)
      json_object_put (ev);
  }
  g_string_append (keep, line);
  g_string_append_c (keep, '\n');
}

/* Reads what D wrote, for up to TIMEOUT_MS; reaps it at the end.  A
 * signal to snapmig is passed on to it once (SIGTERM). */
static void
dest_pump (DestProc *d, const SmMigOptions *o, int timeout_ms)
{
  struct pollfd p[2];
  int n = 0;

  if (d->done)
    return;
  if (d->out_fd >= 0)
    p[n++] = (struct pollfd) { .fd = d->out_fd, .events = POLLIN };
  if (d->err_fd >= 0)
    p[n++] = (struct pollfd) { .fd = d->err_fd, .events = POLLIN };
  if (n == 0) {
    waitpid (d->pid, &d->status, 0);
    g_spawn_close_pid (d->pid);
    d->done = true;
    return;
  }
  if (poll (p, (nfds_t) n, timeout_ms) < 0 && errno != EINTR)
    return;
  if (sm_interrupted () && !d->signalled) {
    kill (d->pid, SIGTERM);
    d->signalled = true;
  }
  for (int i = 0; i < n; i++) {
    char buf[65536];
    ssize_t k;

    if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
      continue;
    k = read (p[i].fd, buf, sizeof buf);
    if (k > 0 && p[i].fd == d->out_fd) {
      g_string_append_len (d->out, buf, k);
    } else if (k > 0) {
      char *nl;

      g_string_append_len (d->line, buf, k);
      while ((nl = strchr (d->line->str, '\n'))) {
        *nl = '\0';
        relay_line (d, d->line->str, o);
        g_string_erase (d->line, 0, nl - d->line->str + 1);
      }
    } else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
      close (p[i].fd);
      if (p[i].fd == d->out_fd)
        d->out_fd = -1;
      else
        d->err_fd = -1;
    }
  }
}

static void
dest_wait (DestProc *d, const SmMigOptions *o)
{
  while (!d->done)
    dest_pump (d, o, 200);
  if (d->line->len)
    relay_line (d, d->line->str, o);
}

/* The destination's last error line ("snapmig: error: ..."), or how it
 * ended. */
static char *
dest_error (const DestProc *d)
{
  g_auto(GStrv) lines = g_strsplit (d->err->str, "\n", -1);
  const char *last = NULL;

  for (char **l = lines; *l; l++)
    if (**l)
      last = *l;
  if (last && g_str_has_prefix (last, "snapmig: error: "))
    last += strlen ("snapmig: error: ");
  if (last)
    return g_strdup (last);
  if (WIFSIGNALED (d->status))
    return g_strdup_printf ("the destination's snapmig was killed by signal "
                            "%d (run 'snapmig recover --incoming' there if "
                            "anything is left)", WTERMSIG (d->status));
  return g_strdup_printf ("the destination's snapmig exited with status %d "
                          "and no message",
                          WIFEXITED (d->status) ? WEXITSTATUS (d->status) : -1);
}

/* Waits for D and reads its answer: the cookie, or NULL with the error
 * (*FAILED_COOKIE, when non-NULL, gets the cookie a failing phase still
 * printed). */
static SmMigCookie *
dest_result (DestProc *d, const SmMigOptions *o, SmMigCookie **failed_cookie,
             GError **error)
{
  g_autoptr(SmMigCookie) reply = NULL;
  GError *err = NULL;

  dest_wait (d, o);
  if (d->out->len)
    reply = sm_mig_cookie_parse (d->out->str, (gssize) d->out->len, &err);
  if (!g_spawn_check_wait_status (d->status, NULL)) {
    g_autofree char *why = dest_error (d);

    if (failed_cookie && reply)
      *failed_cookie = g_steal_pointer (&reply);
    g_set_error (error, SM_ERROR, d->code, "%s", why);
    g_clear_error (&err);
    return NULL;
  }
  if (!reply) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "the destination's answer is not a migration cookie: %s",
                 err ? err->message : "it printed nothing");
    g_clear_error (&err);
    return NULL;
  }
  return g_steal_pointer (&reply);
}

static SmMigCookie *
dest_phase (const SmMigOptions *o, const char *const *dest_argv,
            const char *phase, const char *const *dest_extra,
            const char *const *extra, const SmMigCookie *c,
            SmMigCookie **failed_cookie, GError **error)
{
  g_autofree char *xml = sm_mig_cookie_format (c);
  g_autoptr(DestProc) d = dest_start (dest_argv, phase, dest_extra, extra,
                                      xml, false, error);

  if (!d)
    return NULL;
  return dest_result (d, o, failed_cookie, error);
}

SmMigCookie *
sm_mig_dest_phase (const SmMigOptions *o, const char *const *dest_argv,
                   const char *phase, const char *const *dest_extra,
                   const char *const *extra, const SmMigCookie *c,
                   GError **error)
{
  return dest_phase (o, dest_argv, phase, dest_extra, extra, c, NULL, error);
}

/* Cancels the destination (migrate-finish --cancel), with signals set
 * aside; ERR gets what failed appended. */
static void
cancel_dest (const SmMigOptions *o, const char *const *dest_argv,
             const char *const *dest_extra, const SmMigCookie *c,
             GError **err)
{
  static const char *const cancel[] = { "--cancel", NULL };
  GError *undo = NULL;
  int sig = sm_interrupt_set_aside ();
  g_autoptr(SmMigCookie) ignored = NULL;

  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "cancel", NULL);
  ignored = dest_phase (o, dest_argv, "migrate-finish", dest_extra, cancel, c,
                        NULL, &undo);
  sm_interrupt_restore (sig);
  if (undo) {
    g_prefix_error (err, "(the destination's clean-up could not be "
                    "confirmed: %s; its finish cleans up by itself once this "
                    "snapmig's connection to it is gone — run 'snapmig "
                    "recover --incoming' there to be sure) ", undo->message);
    g_error_free (undo);
  }
}

/* The orchestrator's watch of the destination's finish during post-copy:
 * a finish whose process (or its transport: ssh) died is started again,
 * with backoff, since the guest can only be finished there. */
typedef struct {
  DestProc *proc;
  SmMigCookie *finished;       /* the answer of a finish that succeeded */
  const SmMigOptions *o;
  const char *const *dest_argv;
  const char *const *dest_extra;
  const char *xml;             /* the cookie it reads */
  int restarts;
  int backoff_ms;
  gint64 next_try;
} FinishWatch;

#define FINISH_RESTARTS_MAX 30
/* how long the recovery agent may take to answer a "recover" */
#define AGENT_ANSWER_MS 20000

/* migrate-recover --incoming --hold on the destination, started with its
 * finish when post-copy is enabled (sm_migrate_recover_agent): it holds an
 * out-of-band connection to the destination QEMU from before the switch. */
static DestProc *
agent_start (const SmMigOptions *o, const char *const *dest_argv,
             const char *const *dest_extra, const char *xml)
{
  static const char *const hold[] = { "--incoming", "--hold", NULL };
  GError *e = NULL;
  DestProc *a = dest_start (dest_argv, "migrate-recover", dest_extra, hold,
                            xml, true, &e);

  if (!a) {
    g_autofree char *msg = g_strdup_printf ("the destination's recovery "
                                            "agent did not start (%s): a "
                                            "recovery runs migrate-recover "
                                            "--incoming there instead",
                                            e->message);
    sm_mig_emit (o->event, o->opaque, "message", "s:message", msg, NULL);
    g_error_free (e);
  }
  return a;
}

/* The agent's next line ("ready" skipped), or NULL once it ended or
 * after AGENT_ANSWER_MS. */
static char *
agent_line (DestProc *a, const SmMigOptions *o)
{
  gint64 end = g_get_monotonic_time () + (gint64) AGENT_ANSWER_MS * 1000;

  for (;;) {
    char *nl = strchr (a->out->str, '\n');

    if (nl) {
      char *line = g_strndup (a->out->str, (gsize) (nl - a->out->str));

      g_string_erase (a->out, 0, nl - a->out->str + 1);
      if (strcmp (line, "ready") != 0)
        return line;
      g_free (line);
      continue;
    }
    if (a->done || g_get_monotonic_time () >= end)
      return NULL;
    dest_pump (a, o, 100);
  }
}

typedef struct {
  DestProc *proc;
  const SmMigOptions *o;
} Agent;

static char *
agent_listen (void *data, bool *used, GError **error)
{
  Agent *ag = data;
  g_autofree char *line = NULL;

  *used = false;
  if (!ag->proc || ag->proc->done || ag->proc->in_fd < 0 ||
      !write_to_phase (ag->proc->in_fd, "recover\n", 8))
    return NULL;
  line = agent_line (ag->proc, ag->o);
  if (!line) {
    g_clear_pointer (&ag->proc, dest_proc_free);   /* useless now */
    return NULL;
  }
  *used = true;
  if (g_str_has_prefix (line, "uri "))
    return g_strdup (line + 4);
  if (g_str_has_prefix (line, "error ")) {
    char *sp = strchr (line + 6, ' ');
    g_autofree char *code = g_strndup (line + 6, sp ? (gsize) (sp - line - 6)
                                                    : strlen (line + 6));

    g_set_error (error, SM_ERROR, sm_error_code_from_name (code), "%s",
                 sp ? sp + 1 : "the recovery agent failed");
    return NULL;
  }
  g_set_error (error, SM_ERROR, SM_ERROR_FAILED, "the destination's "
               "recovery agent answered: %s", line);
  return NULL;
}

static bool
finish_alive (void *data, GError **error)
{
  static const char *const watch[] = { "--watch-stdin", "--json", NULL };
  FinishWatch *f = data;
  GError *e = NULL;

  if (f->proc) {
    dest_pump (f->proc, f->o, 0);
    if (!f->proc->done)
      return true;
    f->finished = dest_result (f->proc, f->o, NULL, &e);
    g_clear_pointer (&f->proc, dest_proc_free);
    if (f->finished)
      return true;
    {
      g_autofree char *msg = g_strdup_printf ("the destination's finish "
                                              "ended (%s): starting it again",
                                              e->message);
      sm_mig_emit (f->o->event, f->o->opaque, "message", "s:message", msg,
                   NULL);
    }
    g_clear_error (&e);
    f->next_try = g_get_monotonic_time () + (gint64) f->backoff_ms * 1000;
  }
  if (f->finished || g_get_monotonic_time () < f->next_try)
    return true;
  if (f->restarts++ >= FINISH_RESTARTS_MAX) {
    g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
                 "post-copy: the destination's finish could not be run "
                 "again after %d attempts (the guest runs there; run "
                 "'snapmig recover --incoming' there once the migration "
                 "completed)", FINISH_RESTARTS_MAX);
    return false;
  }
  f->proc = dest_start (f->dest_argv, "migrate-finish", f->dest_extra, watch,
                        f->xml, true, &e);
  if (!f->proc) {
    g_clear_error (&e);
    f->next_try = g_get_monotonic_time () + (gint64) f->backoff_ms * 1000;
    f->backoff_ms = MIN (f->backoff_ms * 2, 10000);
  }
  return true;
}

/* SmMigOptions.dest_ready: the finish started before perform. */
typedef struct {
  DestProc *finish;
  const SmMigOptions *o;
} FinishReady;

static void
finish_ready (void *data, int timeout_ms)
{
  FinishReady *r = data;
  gint64 end = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  while (!r->finish->up && !r->finish->done && !sm_interrupted ()) {
    gint64 left = (end - g_get_monotonic_time ()) / 1000;

    if (left <= 0) {
      sm_debug ("migrate", "the destination's finish did not say it runs "
                "within %d ms: going on", timeout_ms);
      return;
    }
    dest_pump (r->finish, r->o, (int) MIN (left, 100));
  }
}

/* The destination cannot post-copy: refused before anything moves, unless
 * O says to fall back (then *FALLBACK_REASON says why).  A dry run of
 * begin and prepare asks it. */
static bool
probe_postcopy (SmQmp *qmp, SmVmState *st, const SmMigOptions *o,
                const char *const *dest_argv, const char *const *dest_extra,
                char **fallback_reason, GError **error)
{
  static const char *const dry[] = { "--dry-run", "--json", NULL };
  g_autoptr(SmMigCookie) plan = sm_migrate_begin (qmp, st, o, true, error);
  g_autoptr(SmMigCookie) answer = NULL;

  if (!plan)
    return false;
  answer = dest_phase (o, dest_argv, "migrate-prepare", dest_extra, dry, plan,
                       NULL, error);
  if (!answer)
    return false;
  if (!answer->postcopy)
    *fallback_reason = g_strdup (answer->postcopy_refused ?
                                 answer->postcopy_refused : "refused");
  return true;
}

/* The end of a migration that switched to post-copy: its wait with
 * recovery (the destination's finish FINISH watched and run again when its
 * transport dies), then the finish's answer.  *PHASE follows. */
static SmMigCookie *
postcopy_tail (SmQmp *qmp, SmVmState *st, SmMigCookie *prepared,
               const SmMigOptions *o, const char *const *dest_argv,
               const char *const *dest_extra, DestProc *finish,
               DestProc *agent, const char *xml, const char **phase,
               GError **error)
{
  FinishWatch fw = { .proc = finish, .o = o, .dest_argv = dest_argv,
                     .dest_extra = dest_extra, .xml = xml, .backoff_ms = 1000 };
  Agent ag = { .proc = agent, .o = o };
  SmMigCookie *finished;
  bool ok = sm_mig_postcopy_wait (qmp, st, prepared, o, dest_argv, dest_extra,
                                  finish_alive, &fw, agent_listen, &ag, error);

  g_clear_pointer (&ag.proc, dest_proc_free);
  if (!ok) {
    g_clear_pointer (&fw.proc, dest_proc_free);
    g_clear_pointer (&fw.finished, sm_mig_cookie_free);
    return NULL;
  }
  *phase = "finish";
  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "finish", NULL);
  while (!fw.finished) {
    GError *err = NULL;

    if (!fw.proc && !finish_alive (&fw, error))
      return NULL;
    if (!fw.proc) {
      g_usleep (200000);
      continue;
    }
    fw.finished = dest_result (fw.proc, o, NULL, &err);
    g_clear_pointer (&fw.proc, dest_proc_free);
    if (!fw.finished && fw.restarts >= 3) {
      g_propagate_prefixed_error (error, err, "the migration completed and "
                                  "the guest runs on the destination, whose "
                                  "finish failed (run 'snapmig recover "
                                  "--incoming' there, then 'snapmig recover "
                                  "--qmp %s' here): ", sm_qmp_address (qmp));
      return NULL;
    }
    g_clear_error (&err);
  }
  finished = g_steal_pointer (&fw.finished);
  finished->postcopy_used = true;
  finished->postcopy_requests = prepared->postcopy_requests;
  finished->recoveries = prepared->recoveries;
  return finished;
}

/* Ends the migration's tunnel, if any, before the destination is cleaned
 * up (its `relay --hold` could otherwise make its directory again) and
 * before the source's confirm or roll-back, which need none. */
static void
end_tunnel (SmTunnel **tunnel, SmMigOptions *tun)
{
  g_clear_pointer (tunnel, sm_tunnel_close);
  tun->tunnel_handle = NULL;
}

SmMigCookie *
sm_migrate_run (SmQmp *qmp, SmVmState *st, const SmMigOptions *o,
                const char *const *dest_argv, const char *const *dest_extra,
                bool dry_run, char **dest_plan, GError **error)
{
  static const char *const dry[] = { "--dry-run", NULL };
  static const char *const json[] = { "--json", NULL };
  static const char *const watch[] = { "--watch-stdin", "--json", NULL };
  g_autoptr(SmMigCookie) c = NULL;
  g_autoptr(SmMigCookie) prepared = NULL;
  g_autoptr(SmMigCookie) finished = NULL;
  g_autoptr(SmMigCookie) failed = NULL;
  g_autoptr(DestProc) finish = NULL;
  g_autoptr(DestProc) agent = NULL;
  g_autofree char *xml = NULL;
  g_autofree char *refused = NULL;
  g_autoptr(SmTunnel) tunnel = NULL;
  SmMigOptions pre, tun, with_ready;
  FinishReady ready;
  GError *err = NULL;
  const char *phase = "begin";

  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "begin", NULL);
  if ((o->postcopy || o->postcopy_after_precopy) && !dry_run) {
    if (!probe_postcopy (qmp, st, o, dest_argv, dest_extra, &refused, &err))
      goto fail_begin;
    if (refused) {
      pre = *o;
      pre.postcopy = pre.postcopy_after_precopy = false;
      o = &pre;
    }
  }
  c = sm_migrate_begin (qmp, st, o, dry_run, &err);
  if (!c)
    goto fail_begin;
  if (o->tunnel && !dry_run) {
    tunnel = sm_mig_tunnel_open (st, c, o, dest_argv, dest_extra, &err);
    if (!tunnel)
      goto rollback_source;
    tun = *o;
    tun.tunnel_handle = tunnel;
    o = &tun;
  }

  phase = "prepare";
  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "prepare", NULL);
  prepared = dest_phase (o, dest_argv, "migrate-prepare", dest_extra,
                         dry_run ? dry : json, c, NULL, &err);
  if (dry_run) {
    if (!prepared)
      goto fail_begin;
    if (dest_plan)
      *dest_plan = sm_mig_cookie_format (prepared);
    return g_steal_pointer (&c);
  }
  if (!prepared)
    goto rollback_source;

  /* finish waits on the destination from now on, so that the guest
   * resumes there the moment the migration completes */
  xml = sm_mig_cookie_format (prepared);
  finish = dest_start (dest_argv, "migrate-finish", dest_extra, watch, xml,
                       true, &err);
  if (!finish) {
    end_tunnel (&tunnel, &tun);
    cancel_dest (o, dest_argv, dest_extra, prepared, &err);
    goto rollback_prepared;
  }
  if (prepared->postcopy)
    agent = agent_start (o, dest_argv, dest_extra, xml);
  ready = (FinishReady) { .finish = finish, .o = o };
  with_ready = *o;
  with_ready.dest_ready = finish_ready;
  with_ready.ready_opaque = &ready;
  o = &with_ready;

  phase = "perform";
  if (!sm_migrate_perform (qmp, st, prepared, o, &err)) {
    g_clear_pointer (&agent, dest_proc_free);
    end_tunnel (&tunnel, &tun);
    kill (finish->pid, SIGTERM);
    dest_wait (finish, o);
    cancel_dest (o, dest_argv, dest_extra, prepared, &err);
    goto rollback_prepared;
  }

  if (prepared->postcopy_used) {
    /* the guest runs on the destination from now on: nothing is rolled
     * back; a failed link is recovered */
    phase = "postcopy";
    finished = postcopy_tail (qmp, st, prepared, o, dest_argv, dest_extra,
                              g_steal_pointer (&finish),
                              g_steal_pointer (&agent), xml, &phase, &err);
    if (!finished && err->code == SM_ERROR_NOT_FOUND &&
        strstr (err->message, SM_MIG_GONE_NEVER_RAN)) {
      /* its QEMU is gone before the guest ran there: what it left goes */
      end_tunnel (&tunnel, &tun);
      cancel_dest (o, dest_argv, dest_extra, prepared, &err);
    }
    if (!finished)
      goto fail_begin;
  } else {
    phase = "finish";
    sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "finish", NULL);
    finished = dest_result (finish, o, &failed, &err);
  }
  if (tunnel && finished) {
    SmTunnelState ts;

    if (sm_tunnel_state (tunnel, &ts, NULL) && ts.bytes > 0)
      finished->tunnel_bytes = ts.bytes;
  }
  /* every stream between the hosts has ended: confirm and a roll-back
   * need no tunnel */
  end_tunnel (&tunnel, &tun);
  if (!finished) {
    g_clear_pointer (&c, sm_mig_cookie_free);
    if (failed) {
      c = g_steal_pointer (&failed);
    } else {
      c = g_steal_pointer (&prepared);
      c->failed = false;          /* the destination's state is unknown */
    }
    goto rollback_source;
  }
  if (refused) {
    g_free (finished->postcopy_refused);
    finished->postcopy_refused = g_strdup (refused);
  }
  finished->stopped_at_us = prepared->stopped_at_us;
  finished->link_resumes = prepared->link_resumes;
  g_free (finished->transport);
  finished->transport = g_strdup (prepared->transport);

  finished->disk_bytes = prepared->disk_bytes;
  finished->ram_bytes = prepared->ram_bytes;
  if (finished->resumed_at_us > 0 && prepared->stopped_at_us > 0)
    finished->pause_us = finished->resumed_at_us - prepared->stopped_at_us;

  phase = "confirm";
  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "confirm", NULL);
  if (!sm_migrate_confirm (qmp, st, finished, true, &err)) {
    g_propagate_prefixed_error (error, err, "confirm: the guest runs on the "
                                "destination, but the source could not be "
                                "cleaned up: ");
    return NULL;
  }
  return g_steal_pointer (&finished);

rollback_prepared:
  end_tunnel (&tunnel, &tun);
  g_clear_pointer (&c, sm_mig_cookie_free);
  c = g_steal_pointer (&prepared);
rollback_source:
  end_tunnel (&tunnel, &tun);
  {
    GError *undo = NULL;
    int sig = sm_interrupt_set_aside ();
    bool undone = sm_migrate_confirm (qmp, st, c, false, &undo);

    sm_interrupt_restore (sig);
    if (!undone) {
      g_prefix_error (&err, "(and the source's roll-back failed: %s) ",
                      undo->message);
      g_error_free (undo);
    }
  }
fail_begin:
  g_propagate_prefixed_error (error, err, "%s: ", phase);
  return NULL;
}

/* ---- recover (source) ------------------------------------------------- */

/* The cookie recover works from: the journal's header. */
static SmMigCookie *
cookie_from_journal (json_object *h)
{
  SmMigCookie *c = sm_mig_cookie_new ();
  json_object *disks = sm_json_get_array (h, "disks");
  const char *storage = sm_json_get_string (h, "storage");

  c->id = g_strdup (sm_json_get_string (h, "id"));
  c->storage = storage && sm_mig_storage_from_string (storage) >= 0 ?
               (SmMigStorage) sm_mig_storage_from_string (storage) :
               SM_MIG_STORAGE_CHAIN;
  c->source_running = g_strcmp0 (sm_json_get_string (h, "run-state"),
                                 "running") == 0;
  c->layers_uri = g_strdup ("unix:");   /* stop a layer server if any */
  for (size_t i = 0; disks && i < json_object_array_length (disks); i++) {
    json_object *o = json_object_array_get_idx (disks, i);
    SmMigDisk *d = sm_mig_disk_new (sm_json_get_string (o, "name"));

    d->id = g_strdup (sm_json_get_string (o, "id"));
    d->migrate = true;
    d->source_top = g_strdup (sm_json_get_string (o, "orig-top"));
    d->source_new_top = g_strdup (sm_json_get_string (o, "new-top"));
    g_ptr_array_add (c->disks, d);
  }
  return c;
}

static bool recover_dest_never_ran;
static bool recover_dest_runs;

void
sm_migrate_recover_set_dest_never_ran (bool never_ran)
{
  recover_dest_never_ran = never_ran;
}

void
sm_migrate_recover_set_dest_runs (bool runs)
{
  recover_dest_runs = runs;
}

char *
sm_migrate_recover_source (SmQmp *qmp, SmVmState *st, const char *path,
                           json_object *records, GError **error)
{
  json_object *h = json_object_array_get_idx (records, 0);
  g_autoptr(SmMigCookie) c = cookie_from_journal (h);
  g_autoptr(SmJournal) journal = sm_journal_reopen (path, error);
  const char *created_path = sm_json_get_string (h, "created");
  g_autoptr(SmCreatedFiles) created = NULL;
  bool quitting = sm_mig_records_have (records, "quit-source", NULL) ||
                  recover_dest_runs;
  bool postcopy = sm_mig_records_have (records, "postcopy", "end");

  if (!journal)
    return NULL;
  if (c->id)
    sm_mig_tunnel_leftovers (st, c->id);
  if (created_path && g_file_test (created_path, G_FILE_TEST_EXISTS))
    created = sm_created_files_load (created_path, NULL);
  if (qmp) {
    g_autoptr(json_object) r = sm_qmp_execute_type (qmp, "query-migrate", NULL,
                                                    json_type_object, NULL);
    const char *ms = r ? sm_json_get_string (r, "status") : NULL;

    if (!sm_mig_records_have (records, "migrate", NULL))
      ms = "none";                /* QEMU's status is an earlier migration's */

    if (ms && g_str_has_prefix (ms, "postcopy-") && recover_dest_runs) {
      quitting = true;            /* the administrator says: the guest is
                                     the destination's (or lost with it) */
    } else if (ms && g_str_has_prefix (ms, "postcopy-")) {
      g_set_error (error, SM_ERROR, SM_ERROR_BUSY,
                   "outgoing migration %s runs post-copy (status %s): the "
                   "guest runs on the destination and is never resumed "
                   "here (journal %s kept).  %s", c->id, ms, path,
                   strcmp (ms, "postcopy-paused") == 0 ?
                   "Its link failed: run 'snapmig migrate-recover' with the "
                   "migration's --dest-cmd to resume it; if the destination "
                   "QEMU is gone, the guest's run is lost with it (QEMU "
                   "cannot resume it here) and 'snapmig recover "
                   "--dest-runs' quits this QEMU and folds its disks back" :
                   "Run recover again once it completed");
      return NULL;
    }
    if (postcopy && g_strcmp0 (ms, "completed") == 0)
      quitting = true;            /* post-copy: the destination runs it */
    if (postcopy && !quitting) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "outgoing migration %s reached post-copy and its status "
                   "is now %s: the guest's newest state was on the "
                   "destination, so the source is never resumed (journal %s "
                   "kept); check the destination", c->id, ms ? ms : "unknown",
                   path);
      return NULL;
    }
    if (g_strcmp0 (ms, "completed") == 0 && !quitting &&
        !recover_dest_never_ran) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "outgoing migration %s: the VM's state reached the "
                   "destination, which may run it: the source stays paused "
                   "(journal %s kept).  If the destination runs the guest, "
                   "quit this QEMU; if the destination never ran it ('snapmig "
                   "recover --incoming' there says so), run 'snapmig recover "
                   "--dest-never-ran' here; if it runs the guest, 'snapmig "
                   "recover --dest-runs' quits this QEMU and folds its "
                   "snapshot back",
                   c->id, path);
      return NULL;
    }
    if (quitting && (g_strcmp0 (ms, "completed") == 0 ||
                     (ms && g_str_has_prefix (ms, "postcopy-")))) {
      pid_t pid = sm_qmp_peer_pid (qmp);
      uint64_t start = pid > 0 ? sm_proc_start_time (pid) : 0;

      sm_qmp_run (qmp, "quit", NULL, NULL);
      if (pid > 0 && !sm_proc_wait_gone (pid, start, 10000)) {
        g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                     "outgoing migration %s: the source QEMU (pid %d) did "
                     "not quit within 10 s; journal %s kept", c->id,
                     (int) pid, path);
        return NULL;
      }
      qmp = NULL;
    }
  }
  if (!qmp) {
    /* QEMU is gone (or quit after a completed migration): fold offline */
    if (!sm_migrate_fold_back (NULL, c, created, error))
      return NULL;
    if (created_path)
      unlink (created_path);
    sm_mig_outgoing_clear (st, c->id);
    sm_journal_finish (g_steal_pointer (&journal), NULL);
    return g_strdup_printf ("outgoing migration %s: %s; the snapshot's new "
                            "tops were folded back into the source chain",
                            c->id, quitting ? "the guest runs on the "
                            "destination and the source QEMU has quit"
                            : "the source QEMU is gone");
  }
  if (!sm_migrate_rollback_source (qmp, st, c, recover_dest_never_ran,
                                   journal, error))
    return NULL;
  if (created_path)
    unlink (created_path);
  sm_mig_outgoing_clear (st, c->id);
  sm_journal_finish (g_steal_pointer (&journal), NULL);
  return g_strdup_printf ("outgoing migration %s rolled back: the guest runs "
                          "on the source's own disks", c->id);
}
