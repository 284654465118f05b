/* libsnapmig — post-copy: the destination's probe, the switch (by policy
 * or on request of migrate-start-postcopy), the source's wait for the end
 * of post-copy, and the recovery of a post-copy whose link failed
 * (migrate-recover) (lib/migrate.h).
 *
 * Once the source saw postcopy-active (journal step "postcopy" end) the
 * guest's newest state is on the destination: nothing here ever resumes
 * it on the source or stops the destination.  A failed link pauses both
 * sides (QEMU does it when it notices; snapmig with migrate-pause when the
 * link died silently) and is recovered with migrate-recover on the
 * destination and migrate resume=true on the source. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "blockjob.h"
#include "interrupt.h"
#include "journal.h"
#include "json-util.h"
#include "migrate-private.h"
#include "tunnel.h"
#include "qemu-proc.h"

#define POLL_MS 100
#define GONE_NEVER_RAN SM_MIG_GONE_NEVER_RAN
#define BACKOFF_MAX_MS 10000
/* a resumed stream that does not run within this is retried */
#define RESUME_WAIT_MS 10000

/* ---- the destination's probe ------------------------------------------ */

bool
sm_mig_postcopy_supported (GError **error)
{
  struct uffdio_api api = { .api = UFFD_API };
  int fd = (int) syscall (SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  int e = errno;

  if (fd < 0) {
    if (e == EPERM)
      g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                   "userfaultfd is not permitted to this user (uid %u): the "
                   "destination's snapmig and QEMU must run as root (or "
                   "with the sysctl vm.unprivileged_userfaultfd=1; QEMU 7.2 "
                   "cannot use /dev/userfaultfd)", (unsigned) getuid ());
    else
      g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                   "userfaultfd is not available on this host: %s",
                   g_strerror (e));
    return false;
  }
  if (ioctl (fd, UFFDIO_API, &api) < 0) {
    e = errno;
    close (fd);
    g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                 "userfaultfd's API handshake failed on this host: %s",
                 g_strerror (e));
    return false;
  }
  close (fd);
  return true;
}

/* ---- the source's saved cookie and requests ------------------------------ */

bool
sm_mig_save_outgoing (SmVmState *st, const SmMigCookie *c, GError **error)
{
  g_autofree char *path = sm_mig_outgoing_path (st, c->id, ".cookie");
  g_autofree char *xml = sm_mig_cookie_format (c);
  GError *err = NULL;

  if (!g_file_set_contents (path, xml, -1, &err)) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot save the migration's "
                 "cookie: %s", err->message);
    g_error_free (err);
    return false;
  }
  return true;
}

void
sm_mig_outgoing_clear (SmVmState *st, const char *id)
{
  g_autofree char *cookie = sm_mig_outgoing_path (st, id, ".cookie");
  g_autofree char *req = sm_mig_outgoing_path (st, id, ".start-postcopy");

  unlink (cookie);
  unlink (req);
}

SmMigCookie *
sm_migrate_load_outgoing (SmVmState *st, GError **error)
{
  const char *dir = sm_vm_state_journal_dir (st);
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d && (name = g_dir_read_name (d))) {
    g_autofree char *id = NULL;
    g_autofree char *journal = NULL;
    g_autofree char *path = NULL;
    g_autofree char *xml = NULL;
    gsize len = 0;

    if (!g_str_has_suffix (name, ".cookie"))
      continue;
    id = g_strndup (name, strlen (name) - strlen (".cookie"));
    journal = sm_mig_outgoing_path (st, id, ".journal");
    if (!g_file_test (journal, G_FILE_TEST_EXISTS))
      continue;
    path = g_build_filename (dir, name, NULL);
    if (!g_file_get_contents (path, &xml, &len, NULL))
      continue;
    return sm_mig_cookie_parse (xml, (gssize) len, error);
  }
  g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
               "no outgoing migration of the VM at %s to recover (none "
               "reached its RAM phase; see %s)", sm_vm_state_address (st), dir);
  return NULL;
}

/* The request of migrate-start-postcopy at PATH, answered by rewriting it
 * with ANSWER ("ok ..." or "error: ..."). */
static void
answer_request (const char *path, const char *answer)
{
  g_autofree char *text = g_strconcat (answer, "\n", NULL);

  g_file_set_contents (path, text, -1, NULL);
}

static bool
request_pending (const char *path)
{
  g_autofree char *content = NULL;

  return g_file_get_contents (path, &content, NULL, NULL) &&
         g_str_has_prefix (content, "request");
}

static char *
mib (uint64_t bytes)
{
  return g_strdup_printf ("%.1f MiB", (double) bytes / (1024.0 * 1024.0));
}

bool
sm_mig_switch_tick (SmQmp *qmp, json_object *reply, void *data,
                    GError **error)
{
  SmMigSwitch *sw = data;
  g_autofree char *req = sm_mig_outgoing_path (sw->st, sw->c->id,
                                               ".start-postcopy");
  const char *status = sm_json_get_string (reply, "status");
  json_object *ram = sm_json_get_object (reply, "ram");
  bool requested = request_pending (req);
  const char *why = NULL;

  if (requested && !sw->c->postcopy) {
    answer_request (req, "error: this migration was started without "
                    "--postcopy (the postcopy-ram capability must be on both "
                    "sides from the start)");
    requested = false;
  } else if (requested && sw->switched) {
    answer_request (req, "ok: the switch to post-copy was made already");
    requested = false;
  }
  if (!sw->switched && sw->c->postcopy &&
      (g_strcmp0 (status, "active") == 0 || g_strcmp0 (status, "setup") == 0)) {
    uint64_t passes = 0;

    if (ram)
      sm_json_get_uint64 (ram, "dirty-sync-count", &passes);
    if (requested)
      why = "on request (migrate-start-postcopy)";
    else if (sw->c->postcopy_after_precopy && passes >= 2)
      why = "after the first full pass of pre-copy";
  }
  if (why) {
    GError *err = NULL;
    g_autofree char *msg = g_strdup_printf ("switching to post-copy %s", why);

    if (!sm_mig_journal_step (sw->journal, "postcopy", "begin", NULL, error))
      return false;
    if (!sm_qmp_run (qmp, "migrate-start-postcopy", NULL, &err)) {
      g_autofree char *a = g_strdup_printf ("error: %s", err->message);

      if (requested) {
        answer_request (req, a);
        g_error_free (err);
        return true;
      }
      g_propagate_prefixed_error (error, err, "cannot switch to post-copy: ");
      return false;
    }
    sw->switched = true;
    if (requested)
      answer_request (req, "ok");
    sm_mig_emit (sw->o->event, sw->o->opaque, "message", "s:message", msg,
                 NULL);
    return true;
  }
  if (!sw->switched && sw->o->converge_ms > 0 &&
      (g_get_monotonic_time () - sw->ram_start) / 1000 > sw->o->converge_ms) {
    uint64_t remaining = 0, rate = 0;
    g_autofree char *left = NULL;
    g_autofree char *bw = sw->c->bandwidth ?
      g_strdup_printf (", --bandwidth %s/s", mib (sw->c->bandwidth)) : NULL;

    if (ram) {
      sm_json_get_uint64 (ram, "remaining", &remaining);
      sm_json_get_uint64 (ram, "dirty-pages-rate", &rate);
    }
    left = mib (remaining);
    g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                 "the migration did not converge within %d s: the guest "
                 "dirties its RAM faster than the link carries it (%s still "
                 "to send, %" G_GUINT64_FORMAT " pages dirtied per second%s); "
                 "migrate with --postcopy-after-precopy (post-copy always "
                 "converges), or give it more --bandwidth",
                 sw->o->converge_ms / 1000, left, rate, bw ? bw : "");
    return false;
  }
  return true;
}

/* Asks the snapmig that holds ST (HOLDER says who) to switch migration C
 * to post-copy: a request file it answers at its next poll. */
static bool
request_switch (SmVmState *st, const SmMigCookie *c, const char *qmp_address,
                const char *holder, int timeout_ms, GError **error)
{
  g_autofree char *req = NULL;
  gint64 deadline;
  int fd;

  req = sm_mig_outgoing_path (st, c->id, ".start-postcopy");
  fd = open (req, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && errno != EEXIST) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot write the request "
                 "%s: %s", req, g_strerror (errno));
    return false;
  }
  if (fd >= 0) {
    if (write (fd, "request\n", 8) != 8) {
      close (fd);
      unlink (req);
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot write %s", req);
      return false;
    }
    close (fd);
  }
  deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  while (g_get_monotonic_time () < deadline) {
    g_autofree char *answer = NULL;

    if (g_file_get_contents (req, &answer, NULL, NULL) &&
        !g_str_has_prefix (answer, "request")) {
      unlink (req);
      g_strchomp (answer);
      if (g_str_has_prefix (answer, "ok"))
        return true;
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED, "migration %s: %s",
                   c->id, g_str_has_prefix (answer, "error: ") ?
                   answer + 7 : answer);
      return false;
    }
    if (sm_interrupt_check (error)) {
      unlink (req);
      return false;
    }
    {
      g_autofree char *saved = sm_mig_outgoing_path (st, c->id, ".cookie");

      if (!g_file_test (saved, G_FILE_TEST_EXISTS)) {
        unlink (req);
        g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                     "migration %s of the VM at %s ended before it could "
                     "switch", c->id, qmp_address);
        return false;
      }
    }
    g_usleep (50000);
  }
  unlink (req);
  g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
               "migration %s: the snapmig that runs it (%s) did not answer "
               "the request within %d s (is it past its RAM phase?)", c->id,
               holder, timeout_ms / 1000);
  return false;
}

bool
sm_migrate_start_postcopy (SmVmState *st, const char *qmp_address,
                           int timeout_ms, GError **error)
{
  g_autoptr(GError) busy = NULL;
  g_autoptr(SmMigCookie) c = NULL;

  if (timeout_ms <= 0)
    timeout_ms = 30000;
  if (sm_vm_state_lock (st, &busy)) {
    /* no snapmig drives a migration of this VM: ask QEMU itself */
    g_autoptr(SmQmp) qmp = sm_qmp_connect (qmp_address, timeout_ms, error);
    g_autoptr(json_object) r = NULL;
    const char *status;

    sm_vm_state_unlock (st);
    if (!qmp)
      return false;
    r = sm_qmp_execute_type (qmp, "query-migrate", NULL, json_type_object,
                             error);
    if (!r)
      return false;
    status = sm_json_get_string (r, "status");
    if (g_strcmp0 (status, "active") != 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                   "no migration of the VM at %s is in pre-copy (status %s): "
                   "nothing to switch", qmp_address, status ? status : "none");
      return false;
    }
    if (!sm_qmp_run (qmp, "migrate-start-postcopy", NULL, error)) {
      g_prefix_error (error, "the VM at %s: ", qmp_address);
      return false;
    }
    return true;
  }
  /* migrate (or migrate-perform) holds the VM and its monitor: ask it */
  c = sm_migrate_load_outgoing (st, NULL);
  if (!c) {
    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "no migration of the VM at %s is in its RAM phase (%s)",
                 qmp_address, busy->message);
    return false;
  }
  if (!c->postcopy) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "migration %s of the VM at %s was started without "
                 "--postcopy (the postcopy-ram capability must be on both "
                 "sides from the start): it cannot switch", c->id,
                 qmp_address);
    return false;
  }
  return request_switch (st, c, qmp_address, busy->message, timeout_ms,
                         error);
}

/* ---- recovery ------------------------------------------------------------ */

/* Waits up to MS for QMP's migration status to be one of STATES; the
 * status reached (or the last one seen).  NULL when QEMU is gone. */
static char *
wait_states (SmQmp *qmp, const char *const *states, int ms, GError **error)
{
  gint64 end = g_get_monotonic_time () + (gint64) ms * 1000;

  for (;;) {
    g_autofree char *s = sm_mig_status (qmp, error);

    if (!s)
      return NULL;
    for (const char *const *p = states; *p; p++)
      if (strcmp (s, *p) == 0)
        return g_steal_pointer (&s);
    if (g_get_monotonic_time () >= end)
      return g_steal_pointer (&s);
    sm_block_poll_pause (qmp, 50);
  }
}

/* After migrate resume=true: the status once the stream runs again
 * (postcopy-active, completed), or postcopy-paused when the attempt failed
 * (seen after postcopy-recover, or still after RESUME_WAIT_MS). */
static char *
wait_resumed (SmQmp *qmp, GError **error)
{
  gint64 end = g_get_monotonic_time () + (gint64) RESUME_WAIT_MS * 1000;
  bool recovering = false;

  for (;;) {
    g_autofree char *s = sm_mig_status (qmp, error);

    if (!s)
      return NULL;
    if (strcmp (s, "postcopy-active") == 0 || strcmp (s, "completed") == 0 ||
        (recovering && strcmp (s, "postcopy-paused") == 0) ||
        g_get_monotonic_time () >= end)
      return g_steal_pointer (&s);
    recovering = recovering || strcmp (s, "postcopy-recover") == 0;
    sm_block_poll_pause (qmp, 50);
  }
}

/* Journals the endpoint migrate-recover listens on ({"step":
 * "recover-listen", "phase": "end", "uri": URI}): a later listen whose
 * QEMU answers "triggered already" reuses it. */
static bool
journal_listen (SmJournal *j, const char *uri, GError **error)
{
  json_object *r = json_object_new_object ();

  json_object_object_add (r, "step", json_object_new_string ("recover-listen"));
  json_object_object_add (r, "phase", json_object_new_string ("end"));
  json_object_object_add (r, "uri", json_object_new_string (uri));
  return sm_journal_append (j, r, error);
}

/* A new unix socket name for migrate-recover's listener (when the migration
 * runs on unix sockets): an earlier one may still listen. */
static char *
recover_sock_name (void)
{
  return g_strdup_printf ("recover-%u.sock",
                          (unsigned) g_random_int_range (0, 1 << 30));
}

/* The incoming record at PATH, into IN, when its QEMU still runs; else
 * SM_ERROR_NOT_FOUND saying whether the guest ever ran here (a record
 * rolled back: it never did). */
static bool
incoming_alive (const char *path, const SmMigCookie *c, SmMigIncoming *in,
                GError **error)
{
  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    /* its finish rolled it back: its QEMU had died before the guest ran */
    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "incoming migration %s was rolled back here (its journal "
                 "%s is gone): its QEMU is gone%s", c->id, path,
                 GONE_NEVER_RAN);
    return false;
  }
  if (!sm_mig_incoming_load (path, c->id, in, error))
    return false;
  if (!(in->pid > 0 && sm_proc_alive (in->pid, in->start_time))) {
    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "the destination QEMU (pid %d) of incoming migration %s is "
                 "gone%s", (int) in->pid, c->id, in->finished ? "" :
                 GONE_NEVER_RAN);
    sm_mig_incoming_clear (in);
    return false;
  }
  return true;
}

bool
sm_migrate_recover_listen (SmMigCookie *c, const SmMigDestOptions *o,
                           GError **error)
{
  static const char *const paused[] = { "postcopy-paused", "completed", NULL };
  g_autofree char *path = sm_mig_incoming_path (o->state_dir, c->id, ".journal");
  g_autoptr(SmJournal) journal = NULL;
  g_autoptr(SmQmp) qmp = NULL;
  g_autofree char *status = NULL;
  g_autofree char *uri = NULL;
  g_autofree char *sock = NULL;
  SmMigIncoming in = { 0 };
  GError *err = NULL;

  if (!incoming_alive (path, c, &in, error))
    return false;
  journal = sm_journal_reopen (path, error);
  if (journal && in.qmp && in.run_dir) {
    /* the finish holds snapmig.qmp: the second monitor */
    g_autofree char *ctl = sm_mig_ctl_qmp_path (in.run_dir);

    qmp = sm_qmp_connect (ctl, MIN (sm_mig_dest_stall_ms (o), 10000), error);
  }
  if (!qmp) {
    if (journal && !in.qmp)
      g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                   "incoming migration %s: no QEMU was started here", c->id);
    sm_mig_incoming_clear (&in);
    return false;
  }
  status = sm_mig_status (qmp, error);
  if (!status) {
    sm_mig_incoming_clear (&in);
    return false;
  }
  if (strcmp (status, "postcopy-active") == 0 ||
      strcmp (status, "postcopy-recover") == 0) {
    /* the link died silently: this side has not noticed */
    sm_qmp_run (qmp, "migrate-pause", NULL, NULL);
    g_free (status);
    status = wait_states (qmp, paused, 5000, error);
    if (!status) {
      sm_mig_incoming_clear (&in);
      return false;
    }
  }
  if (strcmp (status, "postcopy-paused") != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "incoming migration %s is %s here, not paused in "
                 "post-copy: nothing to recover", c->id, status);
    sm_mig_incoming_clear (&in);
    return false;
  }
  sock = recover_sock_name ();
  if (!sm_mig_listen (qmp, c, o, "migrate-recover", sock, false, &uri, &err)) {
    if (strstr (err->message, "triggered already") && in.recover_uri) {
      /* its listener of an earlier attempt still waits */
      g_clear_error (&err);
      uri = g_strdup (in.recover_uri);
    } else {
      g_propagate_prefixed_error (error, err, "incoming migration %s: cannot "
                                  "listen for the resumed stream: ", c->id);
      sm_mig_incoming_clear (&in);
      return false;
    }
  }
  sm_mig_incoming_clear (&in);
  if (!journal_listen (journal, uri, error))
    return false;
  g_free (c->migrate_uri);
  c->migrate_uri = g_steal_pointer (&uri);
  g_free (c->phase);
  c->phase = g_strdup ("recover");
  return true;
}

/* ---- the destination's recovery agent ---------------------------------- */

/* One listen of the agent on its out-of-band connection: migrate-pause
 * (this side may not have noticed), then migrate-recover on a free
 * endpoint, retried while the pause takes effect.  LAST: the endpoint of an
 * earlier listen whose listener still waits ("triggered already"). */
static char *
agent_listen (SmQmp *qmp, const SmMigCookie *c, const SmMigDestOptions *o,
              const char *last, GError **error)
{
  g_autofree char *why = NULL;

  json_object_put (sm_qmp_execute_oob (qmp, "migrate-pause", NULL, NULL));
  for (int tries = 0; tries < 100; tries++) {
    g_autofree char *sock = recover_sock_name ();
    char *uri = NULL;
    GError *e = NULL;

    if (sm_mig_listen (qmp, c, o, "migrate-recover", sock, true, &uri, &e))
      return uri;
    if (strstr (e->message, "triggered already") && last) {
      g_error_free (e);
      return g_strdup (last);
    }
    if (e->code != SM_ERROR_BUSY && !strstr (e->message, "postcopy is paused")) {
      g_propagate_error (error, e);
      return NULL;
    }
    g_free (why);
    why = g_strdup (e->message);    /* not paused yet, or no port: again */
    g_error_free (e);
    g_usleep (100000);
  }
  g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
               "the incoming migration %s did not pause for its recovery "
               "within 10 s: %s", c->id, why ? why : "no free endpoint");
  return NULL;
}

bool
sm_migrate_recover_agent (SmMigCookie *c, const SmMigDestOptions *o,
                          int in_fd, FILE *out, GError **error)
{
  g_autofree char *path = sm_mig_incoming_path (o->state_dir, c->id, ".journal");
  g_autofree char *ctl = NULL;
  g_autofree char *last = NULL;
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(GString) line = g_string_new (NULL);
  SmMigIncoming in = { 0 };

  if (!sm_mig_incoming_load (path, c->id, &in, error))
    return false;
  if (!in.run_dir) {
    sm_mig_incoming_clear (&in);
    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "incoming migration %s: no QEMU was started here", c->id);
    return false;
  }
  ctl = sm_mig_ctl_qmp_path (in.run_dir);
  last = g_strdup (in.recover_uri);
  sm_mig_incoming_clear (&in);
  qmp = sm_qmp_connect_oob (ctl, 10000, error);
  if (!qmp)
    return false;
  fprintf (out, "ready\n");
  fflush (out);
  for (;;) {
    char ch;
    ssize_t k = read (in_fd, &ch, 1);

    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return true;                  /* its migrate went away */
    if (ch != '\n') {
      g_string_append_c (line, ch);
      continue;
    }
    if (strcmp (line->str, "recover") == 0) {
      GError *err = NULL;
      g_autofree char *uri = NULL;
      SmMigIncoming now = { 0 };

      if (incoming_alive (path, c, &now, &err)) {
        sm_mig_incoming_clear (&now);
        uri = agent_listen (qmp, c, o, last, &err);
      }

      if (uri) {
        g_autoptr(SmJournal) j = sm_journal_reopen (path, NULL);

        if (j)
          journal_listen (j, uri, NULL);
        g_free (last);
        last = g_strdup (uri);
        fprintf (out, "uri %s\n", uri);
      } else {
        fprintf (out, "error %s %s\n", sm_error_code_name (err), err->message);
        g_error_free (err);
      }
      fflush (out);
    }
    g_string_truncate (line, 0);
  }
}

static bool recover_loop (SmQmp *qmp, SmVmState *st, SmMigCookie *c,
                          const SmMigOptions *o, const char *const *dest_argv,
                          const char *const *dest_extra, SmMigListenFn listen,
                          void *listen_data, GError **error);

bool
sm_migrate_recover_postcopy (SmQmp *qmp, SmVmState *st, SmMigCookie *c,
                             const SmMigOptions *o,
                             const char *const *dest_argv,
                             const char *const *dest_extra, GError **error)
{
  return recover_loop (qmp, st, c, o, dest_argv, dest_extra, NULL, NULL,
                       error);
}

typedef enum { ATTEMPT_DONE, ATTEMPT_FAILED, ATTEMPT_FATAL } Attempt;

/* One attempt of the recovery loop: the source paused if it has not
 * paused by itself, the destination made to listen (LISTEN, else the
 * one-shot phase), the stream resumed.  FAILED: *ERR says why (retried);
 * FATAL: ERROR is set (QEMU does not answer). */
static Attempt
recover_attempt (SmQmp *qmp, SmVmState *st, SmMigCookie *c,
                 const SmMigOptions *o, const char *const *dest_argv,
                 const char *const *dest_extra, SmMigListenFn listen,
                 void *listen_data, int attempt, GError **err,
                 GError **error)
{
  static const char *const incoming[] = { "--incoming", "--json", NULL };
  static const char *const paused[] = { "postcopy-paused", "completed", NULL };
  g_autofree char *status = sm_mig_status (qmp, error);
  g_autoptr(SmMigCookie) listening = NULL;
  g_autofree char *uri = NULL;
  g_autofree char *now = NULL;
  bool used = false;

  if (!status)
    return ATTEMPT_FATAL;
  if (strcmp (status, "postcopy-active") == 0 ||
      strcmp (status, "postcopy-recover") == 0) {
    /* stalled: the link died silently */
    sm_qmp_run (qmp, "migrate-pause", NULL, NULL);
    g_free (status);
    status = wait_states (qmp, paused, 5000, error);
    if (!status)
      return ATTEMPT_FATAL;
  }
  if (strcmp (status, "completed") == 0)
    return ATTEMPT_DONE;
  if (strcmp (status, "postcopy-paused") != 0) {
    g_set_error (err, SM_ERROR, SM_ERROR_FAILED, "the migration is %s", status);
    return ATTEMPT_FAILED;
  }
  if (listen)
    uri = listen (listen_data, &used, err);
  if (!used) {
    g_clear_error (err);
    listening = sm_mig_dest_phase (o, dest_argv, "migrate-recover",
                                   dest_extra, incoming, c, err);
    uri = listening ? g_strdup (listening->migrate_uri) : NULL;
  }
  if (uri && o->tunnel_handle) {
    /* the new endpoint gets its own forward on the same tunnel */
    char *local = sm_mig_source_endpoint (o, uri, err);

    g_free (uri);
    uri = local;
  }
  if (!uri ||
      !sm_qmp_run (qmp, "migrate", sm_qmp_args (err, "s:uri", uri,
                                                "b:resume", true, NULL), err))
    return ATTEMPT_FAILED;
  now = wait_resumed (qmp, error);
  if (!now)
    return ATTEMPT_FATAL;
  if (strcmp (now, "postcopy-active") == 0 || strcmp (now, "completed") == 0) {
    g_autofree char *msg = g_strdup_printf ("post-copy recovered (attempt "
                                            "%d): the stream resumed on %s",
                                            attempt, uri);
    g_autofree char *path = sm_mig_journal_path (st, c->id);
    g_autoptr(SmJournal) j = sm_journal_reopen (path, NULL);

    c->recoveries++;
    if (j)
      sm_mig_journal_step (j, "recover", "end", NULL, NULL);
    sm_mig_emit (o->event, o->opaque, "message", "s:message", msg, NULL);
    return ATTEMPT_DONE;
  }
  g_set_error (err, SM_ERROR, SM_ERROR_DISCONNECTED, "the resumed stream to "
               "%s did not run (status %s)", uri, now);
  return ATTEMPT_FAILED;
}

/* The destination QEMU (or its record) is gone: nothing to resume.  WHY
 * (sm_migrate_recover_listen's message) says whether it ran the guest:
 * then its disks there hold the newest writes. */
static void
set_lost_error (SmQmp *qmp, const GError *why, GError **error)
{
  bool ran = strstr (why->message, GONE_NEVER_RAN) == NULL;

  g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
               "post-copy cannot be recovered: %s.  QEMU cannot resume a "
               "guest on its source once post-copy began, so this run of the "
               "guest is lost.  %s; 'snapmig recover --qmp %s --dest-runs' "
               "quits the source QEMU and folds its disks back", why->message,
               ran ? "It ran on the destination, whose disks hold its newest "
                     "writes: boot the VM from those"
                   : "Its disks on the source hold every write up to the "
                     "switchover: boot the VM from them",
               sm_qmp_address (qmp));
}

static bool
recover_loop (SmQmp *qmp, SmVmState *st, SmMigCookie *c,
              const SmMigOptions *o, const char *const *dest_argv,
              const char *const *dest_extra, SmMigListenFn listen,
              void *listen_data, GError **error)
{
  int limit = o->recover_timeout_ms > 0 ? o->recover_timeout_ms
                                        : SM_MIG_RECOVER_TIMEOUT_MS;
  gint64 deadline = g_get_monotonic_time () + (gint64) limit * 1000;
  g_autofree char *last = NULL;
  int backoff = 1000;

  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "recover", NULL);
  for (int attempt = 1;; attempt++) {
    GError *err = NULL;

    switch (recover_attempt (qmp, st, c, o, dest_argv, dest_extra, listen,
                             listen_data, attempt, &err, error)) {
    case ATTEMPT_DONE:
      return true;
    case ATTEMPT_FATAL:
      g_clear_error (&err);
      return false;
    case ATTEMPT_FAILED:
    default:
      break;
    }
    if (err && err->code == SM_ERROR_NOT_FOUND) {
      set_lost_error (qmp, err, error);
      g_error_free (err);
      return false;
    }
    g_free (last);
    last = g_strdup (err ? err->message : "?");
    g_clear_error (&err);
    {
      g_autofree char *msg = g_strdup_printf ("post-copy recovery attempt %d "
                                              "failed: %s; retrying in %d s",
                                              attempt, last, backoff / 1000);
      sm_mig_emit (o->event, o->opaque, "message", "s:message", msg, NULL);
    }
    if (g_get_monotonic_time () + (gint64) backoff * 1000 > deadline)
      break;
    for (int waited = 0; waited < backoff; waited += POLL_MS) {
      if (sm_interrupt_check (error))
        return false;
      sm_block_poll_pause (qmp, POLL_MS);
    }
    backoff = MIN (backoff * 2, BACKOFF_MAX_MS);
  }
  g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
               "post-copy could not be recovered within %d s (last: %s): "
               "both sides are paused and the guest waits, its RAM split "
               "between the hosts; once the link is back run 'snapmig "
               "migrate-recover --qmp %s' with the same --dest-cmd", limit / 1000,
               last ? last : "?", sm_qmp_address (qmp));
  return false;
}

/* ---- the source's wait for the end of post-copy ---------------------------- */

/* What the source's post-copy wait watches at each poll. */
typedef struct {
  SmVmState *st;
  SmMigCookie *c;
  const SmMigOptions *o;
  const char *const *dest_argv;
  const char *const *dest_extra;
  bool (*finish_alive) (void *data, GError **error);
  void *finish_data;
  const char *req;             /* migrate-start-postcopy's request file */
  SmMigListenFn listen;
  void *listen_data;
  int stall_ms;
  gint64 last_change;
  uint64_t last_done;
} PostcopyWatch;

static bool
postcopy_tick (SmQmp *qmp, json_object *reply, void *data, GError **error)
{
  PostcopyWatch *pw = data;
  const char *status = sm_json_get_string (reply, "status");
  json_object *ram = sm_json_get_object (reply, "ram");
  uint64_t done = 0;
  bool stalled;

  if (ram) {
    sm_json_get_uint64 (ram, "transferred", &done);
    sm_json_get_uint64 (ram, "postcopy-requests", &pw->c->postcopy_requests);
  }
  if (done != pw->last_done) {
    pw->last_done = done;
    pw->last_change = g_get_monotonic_time ();
  }
  if (request_pending (pw->req))
    answer_request (pw->req, "ok: the migration runs post-copy already");
  stalled = g_strcmp0 (status, "postcopy-active") == 0 &&
            (g_get_monotonic_time () - pw->last_change) / 1000 > pw->stall_ms;
  if (g_strcmp0 (status, "postcopy-paused") == 0 || stalled) {
    g_autofree char *msg = g_strdup_printf (
      stalled ? "post-copy made no progress for %d s: the link is down; "
                "recovering" : "post-copy paused (the link failed): "
                "recovering", pw->stall_ms / 1000);
    const SmMigOptions *o = pw->o;

    sm_mig_emit (o->event, o->opaque, "message", "s:message", msg, NULL);
    if (!recover_loop (qmp, pw->st, pw->c, o, pw->dest_argv, pw->dest_extra,
                       pw->listen, pw->listen_data, error))
      return false;
    sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "postcopy", NULL);
    pw->last_change = g_get_monotonic_time ();
    return true;
  }
  return !pw->finish_alive || pw->finish_alive (pw->finish_data, error);
}

bool
sm_mig_postcopy_wait (SmQmp *qmp, SmVmState *st, SmMigCookie *c,
                      const SmMigOptions *o, const char *const *dest_argv,
                      const char *const *dest_extra,
                      bool (*finish_alive) (void *data, GError **error),
                      void *finish_data, SmMigListenFn listen,
                      void *listen_data, GError **error)
{
  static const char *const done[] = { "completed", NULL };
  g_autofree char *req = sm_mig_outgoing_path (st, c->id, ".start-postcopy");
  g_autofree char *status = NULL;
  PostcopyWatch pw = { .st = st, .c = c, .o = o, .dest_argv = dest_argv,
                       .dest_extra = dest_extra, .finish_alive = finish_alive,
                       .finish_data = finish_data, .req = req,
                       .listen = listen, .listen_data = listen_data,
                       .stall_ms = o->stall_timeout_ms > 0 ?
                                   o->stall_timeout_ms : SM_MIG_POSTCOPY_STALL_MS,
                       .last_change = g_get_monotonic_time (),
                       .last_done = G_MAXUINT64 };
  SmMigWait w = { .states = done, .watch_fd = -1, .stage = "post-copy",
                  .fn = o->event, .opaque = o->opaque, .tick = postcopy_tick,
                  .data = &pw, .ram_bytes = &c->ram_bytes };
  GError *err = NULL;

  if (sm_mig_wait (qmp, &w, &status, &err))
    return true;
  if (err->code == SM_ERROR_INTERRUPTED)
    g_propagate_prefixed_error (error, err, "post-copy goes on in QEMU (the "
                                "guest runs on the destination and is never "
                                "resumed here); run 'snapmig migrate-recover "
                                "--qmp %s' if it pauses, and 'snapmig recover "
                                "--qmp %s' once it completed: ",
                                sm_qmp_address (qmp), sm_qmp_address (qmp));
  else
    g_propagate_error (error, err);
  return false;
}

/* ---- migrate-recover by hand ---------------------------------------------- */

SmMigCookie *
sm_migrate_recover_run (SmQmp *qmp, SmVmState *st, const SmMigOptions *o,
                        const char *const *dest_argv,
                        const char *const *dest_extra, GError **error)
{
  g_autoptr(SmMigCookie) c = NULL;
  g_autoptr(SmMigCookie) finished = NULL;
  g_autofree char *status = NULL;
  g_autoptr(SmTunnel) tunnel = NULL;
  SmMigOptions tun;

  if (!sm_vm_state_lock (st, error))
    return NULL;
  c = sm_migrate_load_outgoing (st, error);
  if (!c)
    return NULL;
  status = sm_mig_status (qmp, error);
  if (!status)
    return NULL;
  if (!g_str_has_prefix (status, "postcopy-") && strcmp (status, "completed") != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "migration %s is %s on the source, not in post-copy: "
                 "nothing to recover ('snapmig recover --qmp %s' rolls an "
                 "interrupted migration back)", c->id, status,
                 sm_qmp_address (qmp));
    return NULL;
  }
  c->postcopy_used = true;
  if (g_strcmp0 (c->transport, "tunnel") == 0) {
    /* the migration's tunnel ended with its snapmig: a new one */
    tunnel = sm_mig_tunnel_open (st, c, o, dest_argv, dest_extra, error);
    if (!tunnel)
      return NULL;
    tun = *o;
    tun.tunnel = true;
    tun.tunnel_handle = tunnel;
    o = &tun;
  }
  if (!sm_mig_postcopy_wait (qmp, st, c, o, dest_argv, dest_extra, NULL, NULL,
                             NULL, NULL, error))
    return NULL;
  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "finish", NULL);
  finished = sm_mig_dest_phase (o, dest_argv, "migrate-finish", dest_extra,
                                NULL, c, error);
  if (!finished) {
    g_prefix_error (error, "finish: the migration completed, but the "
                    "destination could not be finished (run 'snapmig "
                    "recover --incoming' there): ");
    return NULL;
  }
  finished->postcopy_used = true;
  finished->postcopy_requests = c->postcopy_requests;
  finished->recoveries = c->recoveries;
  finished->ram_bytes = c->ram_bytes;
  finished->disk_bytes = c->disk_bytes;
  finished->stopped_at_us = c->stopped_at_us;
  if (finished->resumed_at_us > 0 && c->stopped_at_us > 0)
    finished->pause_us = finished->resumed_at_us - c->stopped_at_us;
  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "confirm", NULL);
  if (!sm_migrate_confirm (qmp, st, finished, true, error)) {
    g_prefix_error (error, "confirm: the guest runs on the destination, but "
                    "the source could not be cleaned up: ");
    return NULL;
  }
  return g_steal_pointer (&finished);
}
