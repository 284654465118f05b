/* pause-watch — the second QMP client of bench/pause.sh: it watches the
 * guest's pause from QEMU's own events and, optionally, plays a guest that
 * writes.
 *
 *   pause-watch SOCKET STOPFILE [--write DRIVE]... [--rate MIB_PER_S] [--events]
 *
 * Until the file STOPFILE exists it reads SOCKET's events and records the
 * timestamps QEMU puts on STOP and RESUME (its realtime clock: the honest
 * pause, whatever the client that caused it reports).  With --write, it
 * writes 1 MiB at a time to the DRIVEs in turn, sequentially through the
 * first 64 MiB of each, at RATE MiB/s in all (default 50), through HMP
 * `qemu-io DRIVE "aio_write ..."`, which enters the device's block backend
 * as a guest's write does (the mirror sees it).  Like a guest's vCPUs it
 * issues nothing between STOP and RESUME (a write sent just before the STOP
 * reaches it is drained by QEMU inside the pause, as a guest's would be).
 *
 * With --events it also prints "event STOP US" / "event RESUME US" (QEMU's
 * timestamp) as each comes: a pause that spans two QEMUs (a migration's
 * STOP on the source, RESUME on the destination) is taken from two
 * watchers' lines (bench/nbd-migrate.sh).
 *
 * Prints one line: "pause-us N stops N written-mib X rate-mibs Y", N = -1
 * when no STOP/RESUME pair was seen; the pause is the last pair's.  The
 * write rate is measured over the time the guest was not paused.  Exit 1 on
 * a QMP failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qmp.h"

#define SPAN (64 * 1024 * 1024)
#define CHUNK (1024 * 1024)

int
main (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(GPtrArray) drives = g_ptr_array_new ();
  const char *stopfile;
  double rate = 50;
  gint64 stop_us = -1, pause_us = -1, start, running_us = 0, run_from;
  guint64 written = 0, offset = 0;
  guint next = 0, stops = 0;
  bool paused = false, events = false;
  int i;

  if (argc < 3) {
    fprintf (stderr, "usage: pause-watch SOCKET STOPFILE [--write DRIVE]... "
             "[--rate MIB_PER_S] [--events]\n");
    return 2;
  }
  stopfile = argv[2];
  for (i = 3; i < argc; i++) {
    if (strcmp (argv[i], "--write") == 0 && i + 1 < argc)
      g_ptr_array_add (drives, argv[++i]);
    else if (strcmp (argv[i], "--events") == 0)
      events = true;
    else if (strcmp (argv[i], "--rate") == 0 && i + 1 < argc)
      rate = g_ascii_strtod (argv[++i], NULL);
    else {
      fprintf (stderr, "pause-watch: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  qmp = sm_qmp_connect (argv[1], 10000, &err);
  if (!qmp) {
    fprintf (stderr, "pause-watch: %s\n", err->message);
    return 1;
  }
  sm_qmp_set_timeout (qmp, 30000);
  start = run_from = g_get_monotonic_time ();
  while (!g_file_test (stopfile, G_FILE_TEST_EXISTS)) {
    g_autoptr(json_object) ev = NULL;
    gint64 now = g_get_monotonic_time ();
    gint64 due = drives->len && !paused
                 ? start + (gint64) ((double) written / (rate * CHUNK) * 1e6)
                 : now + 20000;
    int wait_ms = (int) MAX (0, (due - now) / 1000);

    if (drives->len && !paused && due <= now) {
      g_autofree char *cmd = g_strdup_printf (
        "qemu-io %s \"aio_write -P 0x5a %" G_GUINT64_FORMAT " %d\"",
        (char *) drives->pdata[next], offset, CHUNK);
      g_autofree char *out = sm_qmp_hmp (qmp, cmd, &err);

      if (!out) {
        fprintf (stderr, "pause-watch: %s\n", err->message);
        return 1;
      }
      written += CHUNK;
      if (++next == drives->len) {
        next = 0;
        offset = (offset + CHUNK) % SPAN;
      }
      wait_ms = 0;
    }
    ev = sm_qmp_wait_event (qmp, NULL, NULL, NULL, MIN (wait_ms, 20), &err);
    if (!ev) {
      if (!g_error_matches (err, SM_ERROR, SM_ERROR_TIMEOUT)) {
        fprintf (stderr, "pause-watch: %s\n", err->message);
        return 1;
      }
      g_clear_error (&err);
      continue;
    }
    {
      json_object *name;
      const char *n;

      if (!json_object_object_get_ex (ev, "event", &name))
        continue;
      n = json_object_get_string (name);
      if (events && (strcmp (n, "STOP") == 0 || strcmp (n, "RESUME") == 0)) {
        printf ("event %s %" G_GINT64_FORMAT "\n", n, sm_qmp_event_time_us (ev));
        fflush (stdout);
      }
      if (strcmp (n, "STOP") == 0) {
        stop_us = sm_qmp_event_time_us (ev);
        paused = true;
        running_us += g_get_monotonic_time () - run_from;
        stops++;
      } else if (strcmp (n, "RESUME") == 0 && paused) {
        gint64 resume_us = sm_qmp_event_time_us (ev);

        if (stop_us >= 0 && resume_us >= stop_us)
          pause_us = resume_us - stop_us;
        paused = false;
        run_from = g_get_monotonic_time ();
        /* Pace from now on as if the pause had not happened. */
        start = run_from - (gint64) ((double) written / (rate * CHUNK) * 1e6);
      }
    }
  }
  if (!paused)
    running_us += g_get_monotonic_time () - run_from;
  printf ("pause-us %" G_GINT64_FORMAT " stops %u written-mib %.0f "
          "rate-mibs %.1f\n", pause_us, stops, (double) written / CHUNK,
          running_us > 0 ? (double) written / CHUNK / (running_us / 1e6) : 0);
  return 0;
}
