/* mirror-full — the reference bench/lsm.sh compares snapmig against: a
 * whole-disk `drive-mirror sync=full` of several disks at once, timed until
 * every mirror is READY (what `virsh blockcopy` does before its pivot).
 *
 *   mirror-full SOCKET DISK=TARGET [DISK=TARGET...]
 *
 * Starts one drive-mirror per disk (format qcow2, mode absolute-paths: QEMU
 * creates TARGET), waits for every BLOCK_JOB_READY and prints the seconds
 * from the first drive-mirror to the last READY on stdout.  At READY the
 * copied data may still sit in the page cache only, while qemu-img convert
 * and snapmig's layer copies end with a flush; so it then fsyncs every
 * TARGET and prints a second line: the seconds until READY and flushed.
 * Finally it cancels the mirrors (a cancel after READY leaves the VM on its
 * source) and waits for their end.  Exit 1 with a message on any failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "qmp.h"

#define TIMEOUT_MS (300 * 1000)

static bool
event_for_job (json_object *event, void *opaque)
{
  GHashTable *pending = opaque;
  json_object *data, *device;

  return json_object_object_get_ex (event, "data", &data) &&
         json_object_object_get_ex (data, "device", &device) &&
         g_hash_table_contains (pending, json_object_get_string (device));
}

/* Waits until every job in PENDING reached READY (WANT_READY) or ended.
 * A job that ends while READY is awaited, or ends with an error, fails. */
static bool
wait_all (SmQmp *qmp, GHashTable *pending, bool want_ready, GError **error)
{
  while (g_hash_table_size (pending) > 0) {
    g_autoptr(json_object) ev = sm_qmp_wait_event (qmp, NULL, event_for_job,
                                                   pending, TIMEOUT_MS, error);
    json_object *v = NULL, *data = NULL, *job_error = NULL;
    const char *ev_name, *job;
    bool ended;

    if (!ev)
      return false;
    json_object_object_get_ex (ev, "event", &v);
    ev_name = json_object_get_string (v);
    json_object_object_get_ex (ev, "data", &data);
    json_object_object_get_ex (data, "device", &v);
    job = json_object_get_string (v);
    json_object_object_get_ex (data, "error", &job_error);
    ended = strcmp (ev_name, "BLOCK_JOB_COMPLETED") == 0 ||
            strcmp (ev_name, "BLOCK_JOB_CANCELLED") == 0;
    if (job_error || (ended && want_ready)) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED, "job %s ended (%s): %s",
                   job, ev_name, job_error
                   ? json_object_get_string (job_error) : "no error");
      return false;
    }
    if ((want_ready && strcmp (ev_name, "BLOCK_JOB_READY") == 0) ||
        (!want_ready && ended))
      g_hash_table_remove (pending, job);
  }
  return true;
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(GHashTable) pending = g_hash_table_new_full (g_str_hash,
                                                         g_str_equal,
                                                         g_free, NULL);
  g_autoptr(GPtrArray) jobs = g_ptr_array_new_with_free_func (g_free);
  gint64 t0, t1;
  int i;

  if (argc < 3) {
    fprintf (stderr, "usage: mirror-full SOCKET DISK=TARGET...\n");
    return 2;
  }
  qmp = sm_qmp_connect (argv[1], 10000, &err);
  if (!qmp) {
    fprintf (stderr, "mirror-full: error: %s\n", err->message);
    return 1;
  }
  t0 = g_get_monotonic_time ();
  for (i = 2; i < argc; i++) {
    g_auto(GStrv) kv = g_strsplit (argv[i], "=", 2);
    g_autoptr(json_object) args = NULL;
    char *job;

    if (!kv[0] || !kv[1]) {
      fprintf (stderr, "mirror-full: error: '%s' is not DISK=TARGET\n",
               argv[i]);
      return 2;
    }
    job = g_strdup_printf ("bench-full-%s", kv[0]);
    args = sm_qmp_args (&err, "s:device", kv[0], "s:job-id", job,
                        "s:target", kv[1], "s:format", "qcow2",
                        "s:sync", "full", "s:mode", "absolute-paths", NULL);
    if (!args || !sm_qmp_run (qmp, "drive-mirror", g_steal_pointer (&args),
                              &err)) {
      fprintf (stderr, "mirror-full: error: disk %s: %s\n", kv[0],
               err->message);
      g_free (job);
      return 1;
    }
    g_hash_table_add (pending, g_strdup (job));
    g_ptr_array_add (jobs, job);
  }
  if (!wait_all (qmp, pending, true, &err)) {
    fprintf (stderr, "mirror-full: error: %s\n", err->message);
    return 1;
  }
  t1 = g_get_monotonic_time ();
  printf ("%.3f\n", (double) (t1 - t0) / G_USEC_PER_SEC);
  for (i = 2; i < argc; i++) {
    const char *target = strchr (argv[i], '=') + 1;
    int fd = open (target, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fsync (fd) < 0) {
      fprintf (stderr, "mirror-full: error: fsync %s: %s\n", target,
               strerror (errno));
      if (fd >= 0)
        close (fd);
      return 1;
    }
    close (fd);
  }
  t1 = g_get_monotonic_time ();
  printf ("%.3f\n", (double) (t1 - t0) / G_USEC_PER_SEC);
  fflush (stdout);

  for (i = 0; i < (int) jobs->len; i++) {
    const char *job = g_ptr_array_index (jobs, i);
    g_autoptr(json_object) args = sm_qmp_args (&err, "s:device", job, NULL);

    if (!args || !sm_qmp_run (qmp, "block-job-cancel", g_steal_pointer (&args),
                              &err)) {
      fprintf (stderr, "mirror-full: error: cancel %s: %s\n", job,
               err->message);
      return 1;
    }
    g_hash_table_add (pending, g_strdup (job));
  }
  /* A cancel after READY ends with BLOCK_JOB_COMPLETED (no pivot). */
  if (!wait_all (qmp, pending, false, &err)) {
    fprintf (stderr, "mirror-full: error: %s\n", err->message);
    return 1;
  }
  return 0;
}
