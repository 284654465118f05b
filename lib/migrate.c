/* libsnapmig — the whole cross-host migration (begin, prepare, perform,
 * finish, confirm) with the destination's phases run through a command,
 * and recover's part for the source (lib/migrate.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "blockjob.h"
#include "interrupt.h"
#include "json-util.h"
#include "migrate-private.h"
#include "qemu-proc.h"

/* Output of one destination phase. */
typedef struct {
  char *out;
  char *err;
  int status;
} DestRun;

static void
dest_run_clear (DestRun *r)
{
  g_free (r->out);
  g_free (r->err);
}

/* Runs DEST_ARGV PHASE DEST_EXTRA... EXTRA with COOKIE on its stdin and
 * collects stdout and stderr.  A signal to snapmig is passed on to it
 * (SIGTERM), and it is waited for. */
static bool
run_dest (const char *const *dest_argv, const char *phase,
          const char *const *dest_extra, const char *extra,
          const char *cookie, DestRun *r, GError **error)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  GString *out = g_string_new (NULL), *err = g_string_new (NULL);
  int in_fd = -1, out_fd = -1, err_fd = -1;
  size_t written = 0, len = strlen (cookie);
  bool signalled = false;
  GPid pid;
  GError *e = NULL;

  for (const char *const *a = dest_argv; *a; a++)
    g_ptr_array_add (argv, (char *) *a);
  g_ptr_array_add (argv, (char *) phase);
  for (const char *const *a = dest_extra; a && *a; a++)
    g_ptr_array_add (argv, (char *) *a);
  if (extra)
    g_ptr_array_add (argv, (char *) extra);
  g_ptr_array_add (argv, NULL);
  if (!g_spawn_async_with_pipes (NULL, (char **) argv->pdata, NULL,
                                 G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD,
                                 NULL, NULL, &pid, &in_fd, &out_fd, &err_fd,
                                 &e)) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "cannot run the destination's snapmig (%s): %s",
                 dest_argv[0], e->message);
    g_error_free (e);
    g_string_free (out, true);
    g_string_free (err, true);
    return false;
  }
  fcntl (in_fd, F_SETFL, O_NONBLOCK);
  while (out_fd >= 0 || err_fd >= 0) {
    struct pollfd p[3];
    int n = 0;
    char buf[65536];

    if (in_fd >= 0)
      p[n++] = (struct pollfd) { .fd = in_fd, .events = POLLOUT };
    if (out_fd >= 0)
      p[n++] = (struct pollfd) { .fd = out_fd, .events = POLLIN };
    if (err_fd >= 0)
      p[n++] = (struct pollfd) { .fd = err_fd, .events = POLLIN };
    if (poll (p, (nfds_t) n, 200) < 0 && errno != EINTR)
      break;
    if (sm_interrupted () && !signalled) {
      kill (pid, SIGTERM);
      signalled = true;
    }
    for (int i = 0; i < n; i++) {
      ssize_t k;

      if (!(p[i].revents & (POLLIN | POLLOUT | POLLHUP | POLLERR)))
        continue;
      if (p[i].fd == in_fd) {
        k = write (in_fd, cookie + written, len - written);
        if (k > 0)
          written += (size_t) k;
        if (k < 0 || written == len) {
          close (in_fd);
          in_fd = -1;
        }
        continue;
      }
      k = read (p[i].fd, buf, sizeof buf);
      if (k > 0) {
        g_string_append_len (p[i].fd == out_fd ? out : err, buf, k);
      } else if (k == 0 || errno != EINTR) {
        close (p[i].fd);
        if (p[i].fd == out_fd)
          out_fd = -1;
        else
          err_fd = -1;
      }
    }
  }
  if (in_fd >= 0)
    close (in_fd);
  waitpid (pid, &r->status, 0);
  g_spawn_close_pid (pid);
  r->out = g_string_free (out, false);
  r->err = g_string_free (err, false);
  return true;
}

/* The destination's last error line ("snapmig: error: ..."), or its exit
 * status. */
static char *
dest_error (const DestRun *r)
{
  g_auto(GStrv) lines = g_strsplit (r->err ? r->err : "", "\n", -1);
  const char *last = NULL;

  for (char **l = lines; *l; l++)
    if (**l)
      last = *l;
  if (last && g_str_has_prefix (last, "snapmig: error: "))
    last += strlen ("snapmig: error: ");
  if (last)
    return g_strdup (last);
  return g_strdup_printf ("it exited with status %d and no message",
                          WIFEXITED (r->status) ? WEXITSTATUS (r->status) : -1);
}

static SmMigCookie *
dest_phase (const SmMigOptions *o, const char *const *dest_argv,
            const char *phase, const char *const *dest_extra,
            const char *extra, const SmMigCookie *c, bool *ran,
            SmMigCookie **failed_cookie, GError **error)
{
  g_autofree char *xml = sm_mig_cookie_format (c);
  g_autoptr(SmMigCookie) reply = NULL;
  DestRun r = { 0 };
  GError *err = NULL;

  *ran = false;
  sm_mig_emit (o->event, o->opaque, "phase", "s:phase",
               strcmp (phase, "migrate-prepare") == 0 ? "prepare" :
               extra ? "cancel" : "finish", NULL);
  if (!run_dest (dest_argv, phase, dest_extra, extra, xml, &r, error))
    return NULL;
  *ran = true;
  if (r.out && *r.out)
    reply = sm_mig_cookie_parse (r.out, -1, &err);
  if (!g_spawn_check_wait_status (r.status, NULL)) {
    g_autofree char *why = dest_error (&r);

    if (failed_cookie && reply)
      *failed_cookie = g_steal_pointer (&reply);
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED, "%s", why);
    g_clear_error (&err);
    dest_run_clear (&r);
    return NULL;
  }
  if (!reply) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "the destination's answer is not a migration cookie: %s",
                 err ? err->message : "it printed nothing");
    g_clear_error (&err);
    dest_run_clear (&r);
    return NULL;
  }
  dest_run_clear (&r);
  return g_steal_pointer (&reply);
}

SmMigCookie *
sm_migrate_run (SmQmp *qmp, SmVmState *st, const SmMigOptions *o,
                const char *const *dest_argv, const char *const *dest_extra,
                bool dry_run, char **dest_plan, GError **error)
{
  g_autoptr(SmMigCookie) c = NULL;
  g_autoptr(SmMigCookie) prepared = NULL;
  g_autoptr(SmMigCookie) finished = NULL;
  g_autoptr(SmMigCookie) failed = NULL;
  GError *err = NULL;
  const char *phase = "begin";
  bool ran = false;

  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "begin", NULL);
  c = sm_migrate_begin (qmp, st, o, dry_run, &err);
  if (!c)
    goto fail_begin;

  phase = "prepare";
  prepared = dest_phase (o, dest_argv, "migrate-prepare", dest_extra,
                         dry_run ? "--dry-run" : NULL, c, &ran, NULL, &err);
  if (dry_run) {
    if (!prepared)
      goto fail_begin;
    if (dest_plan)
      *dest_plan = sm_mig_cookie_format (prepared);
    return g_steal_pointer (&c);
  }
  if (!prepared)
    goto rollback_source;

  phase = "perform";
  if (!sm_migrate_perform (qmp, st, prepared, o, &err)) {
    GError *undo = NULL;
    g_autoptr(SmMigCookie) ignored = dest_phase (o, dest_argv,
                                                 "migrate-finish", dest_extra,
                                                 "--cancel", prepared, &ran,
                                                 NULL, &undo);
    if (undo) {
      g_prefix_error (&err, "(the destination's clean-up failed too: %s; run "
                      "'snapmig recover --incoming' there) ", undo->message);
      g_error_free (undo);
    }
    g_free (c->layers_uri);
    c->layers_uri = NULL;
    g_clear_pointer (&c, sm_mig_cookie_free);
    c = g_steal_pointer (&prepared);
    goto rollback_source;
  }

  phase = "finish";
  finished = dest_phase (o, dest_argv, "migrate-finish", dest_extra, NULL,
                         prepared, &ran, &failed, &err);
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

  phase = "confirm";
  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "confirm", NULL);
  if (!sm_migrate_confirm (qmp, st, finished, true, &err)) {
    g_propagate_prefixed_error (error, err, "confirm: the guest runs on the "
                                "destination, but the source could not be "
                                "cleaned up: ");
    return NULL;
  }
  return g_steal_pointer (&finished);

rollback_source:
  {
    GError *undo = NULL;

    if (!sm_migrate_confirm (qmp, st, c, false, &undo)) {
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

static bool
journal_has (json_object *records, const char *step)
{
  for (size_t i = 1; i < json_object_array_length (records); i++)
    if (g_strcmp0 (sm_json_get_string (json_object_array_get_idx (records, i),
                                       "step"), step) == 0)
      return true;
  return false;
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
  bool quitting = journal_has (records, "quit-source");

  if (!journal)
    return NULL;
  if (created_path && g_file_test (created_path, G_FILE_TEST_EXISTS))
    created = sm_created_files_load (created_path, NULL);
  if (qmp) {
    g_autoptr(json_object) r = sm_qmp_execute_type (qmp, "query-migrate", NULL,
                                                    json_type_object, NULL);
    const char *ms = r ? sm_json_get_string (r, "status") : NULL;

    if (g_strcmp0 (ms, "completed") == 0 && !quitting) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "outgoing migration %s: the VM's state reached the "
                   "destination, which may run it: the source stays paused "
                   "(journal %s kept).  If the destination runs the guest, "
                   "quit this QEMU; if it is gone, run 'snapmig "
                   "migrate-confirm --failed' with the migration's cookie",
                   c->id, path);
      return NULL;
    }
    if (quitting && g_strcmp0 (ms, "completed") == 0) {
      sm_qmp_run (qmp, "quit", NULL, NULL);
      g_usleep (200000);
      qmp = NULL;
    }
  }
  if (!qmp) {
    /* QEMU is gone (or quit after a completed migration): fold offline */
    if (!sm_migrate_fold_back (NULL, c, created, error))
      return NULL;
    if (created_path)
      unlink (created_path);
    sm_journal_finish (g_steal_pointer (&journal), NULL);
    return g_strdup_printf ("outgoing migration %s: %s; the snapshot's new "
                            "tops were folded back into the source chain",
                            c->id, quitting ? "the guest runs on the "
                            "destination and the source QEMU has quit"
                            : "the source QEMU is gone");
  }
  if (!sm_migrate_rollback_source (qmp, st, c, false, journal, error))
    return NULL;
  if (created_path)
    unlink (created_path);
  sm_journal_finish (g_steal_pointer (&journal), NULL);
  return g_strdup_printf ("outgoing migration %s rolled back: the guest runs "
                          "on the source's own disks", c->id);
}
