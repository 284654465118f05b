/* api-move — drives a move through libsnapmig's public API, for
 * tests/integration/test-libsnapmig.sh (built there against the installed
 * library with `pkg-config --cflags --libs snapmig`).  Prints what it saw,
 * one "KEY VALUE" line each; a failure prints "error CODE MESSAGE" and
 * exits 1.
 *
 *   api-move move SOCKET STATE DEST NAME [DURING]
 *       create NAME mirrored into DEST with wait (DURING, a program, is
 *       run once from the first progress callback), then pivot NAME
 *   api-move create SOCKET STATE DEST NAME     create without wait
 *   api-move interrupt SOCKET STATE DEST NAME  create with wait, mirrors at
 *       1 MiB/s, snapmig_interrupt () from the first progress callback;
 *       then prints the signals the process catches ("sigcgt HEX")
 *   api-move wait SOCKET STATE                 snapmig_wait (the current move)
 *   api-move abort SOCKET STATE NAME
 *   api-move pivot SOCKET STATE NAME
 *   api-move status SOCKET STATE               snapmig_status_json
 *   api-move validate STATE DOMAIN SOCKET      prints the report too
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <snapmig.h>

#define TIMEOUT_S 60

typedef struct {
  unsigned calls;              /* progress callbacks */
  unsigned finished;           /* ... with FINISHED */
  unsigned bad;                /* ... with an unknown kind or done > total */
  const char *during;
  int during_rc;
  bool interrupt;              /* snapmig_interrupt () at the first call */
} Seen;

static void
on_progress (const char *kind, const char *name, uint64_t done,
             uint64_t total, bool finished, void *opaque)
{
  Seen *s = opaque;

  if (s->calls++ == 0 && s->during)
    s->during_rc = system (s->during);
  if (s->interrupt)
    snapmig_interrupt ();
  s->finished += finished;
  if ((strcmp (kind, "mirror") != 0 && strcmp (kind, "copy") != 0) ||
      !name || !*name || done > total)
    s->bad++;
}

static int
fail (const char *what, snapmig_error *err)
{
  printf ("error %s %s: %s\n", snapmig_error_code_name (err), what,
          snapmig_error_message (err));
  snapmig_error_free (err);
  return 1;
}

/* The SigCgt line of /proc/self/status: the signals with a handler. */
static void
print_caught_signals (void)
{
  char line[256];
  FILE *f = fopen ("/proc/self/status", "r");

  while (f && fgets (line, sizeof line, f))
    if (strncmp (line, "SigCgt:", 7) == 0)
      printf ("sigcgt %s", line + 8);
  if (f)
    fclose (f);
}

static int
do_create (snapmig_vm *vm, const char *dest, const char *name, bool wait,
           Seen *seen)
{
  snapmig_error *err = NULL;
  snapmig_create_options *o = snapmig_create_options_new (name);
  int rc;

  if (snapmig_create_options_set_mirror_domain (o, dest, &err) < 0) {
    snapmig_create_options_free (o);
    return fail ("mirror domain", err);
  }
  snapmig_create_options_set_wait (o, wait);
  if (seen->interrupt)
    snapmig_create_options_set_bandwidth (o, 1024 * 1024);
  rc = snapmig_create (vm, o, on_progress, seen, &err);
  snapmig_create_options_free (o);
  if (rc < 0)
    return fail ("create", err);
  printf ("created %s\n", name);
  return 0;
}

static int
do_pivot (snapmig_vm *vm, const char *name, Seen *seen)
{
  snapmig_error *err = NULL;
  snapmig_pivot_result *r = NULL;
  size_t i;

  if (snapmig_pivot (vm, name, 0, on_progress, seen, &r, &err) < 0)
    return fail ("pivot", err);
  printf ("pivoted %s\n", name);
  printf ("pause-us %" PRId64 "\n", snapmig_pivot_result_pause_us (r));
  for (i = 0; i < snapmig_pivot_result_moved_count (r); i++)
    printf ("moved %s\n", snapmig_pivot_result_moved (r, i));
  snapmig_pivot_result_free (r);
  return 0;
}

static int
do_validate (const char *state, const char *domain, const char *socket)
{
  snapmig_error *err = NULL;
  snapmig_vm *vm = snapmig_vm_new (socket, state, TIMEOUT_S, &err);
  const char *domains[] = { domain, NULL };
  snapmig_vm *vms[] = { vm, NULL };
  char *report = NULL;
  int rc;

  if (!vm)
    return fail ("vm", err);
  rc = snapmig_validate (domains, vms, 0, &report, &err);
  snapmig_vm_free (vm);
  if (rc < 0)
    return fail ("validate", err);
  printf ("validate %d\n%s\n", rc, report);
  free (report);
  return 0;
}

int
main (int argc, char **argv)
{
  snapmig_error *err = NULL;
  snapmig_vm *vm;
  Seen seen = { 0 };
  const char *cmd = argc > 1 ? argv[1] : "";
  int rc = 2;

  if (strcmp (cmd, "validate") == 0 && argc == 5)
    return do_validate (argv[2], argv[3], argv[4]);
  if (argc < 4) {
    fprintf (stderr, "usage: see the comment at the top of api-move.c\n");
    return 2;
  }
  vm = snapmig_vm_new (argv[2], argv[3], TIMEOUT_S, &err);
  if (!vm)
    return fail ("vm", err);
  if (strcmp (cmd, "move") == 0 && (argc == 6 || argc == 7)) {
    seen.during = argc == 7 ? argv[6] : NULL;
    rc = do_create (vm, argv[4], argv[5], true, &seen);
    printf ("create-progress %u\ncreate-finished %u\nprogress-bad %u\n"
            "during-rc %d\n", seen.calls, seen.finished, seen.bad,
            seen.during_rc);
    if (rc == 0)
      rc = do_pivot (vm, argv[5], &seen);
  } else if (strcmp (cmd, "interrupt") == 0 && argc == 6) {
    seen.interrupt = true;
    rc = do_create (vm, argv[4], argv[5], true, &seen);
    print_caught_signals ();
  } else if (strcmp (cmd, "create") == 0 && argc == 6) {
    rc = do_create (vm, argv[4], argv[5], false, &seen);
  } else if (strcmp (cmd, "wait") == 0 && argc == 4) {
    rc = snapmig_wait (vm, NULL, on_progress, &seen, &err) < 0
         ? fail ("wait", err) : 0;
    if (rc == 0)
      printf ("ready\nwait-progress %u\nwait-finished %u\nprogress-bad %u\n",
              seen.calls, seen.finished, seen.bad);
  } else if (strcmp (cmd, "abort") == 0 && argc == 5) {
    rc = snapmig_abort (vm, argv[4], &err) < 0 ? fail ("abort", err) : 0;
    if (rc == 0)
      printf ("aborted %s\n", argv[4]);
  } else if (strcmp (cmd, "pivot") == 0 && argc == 5) {
    rc = do_pivot (vm, argv[4], &seen);
  } else if (strcmp (cmd, "status") == 0 && argc == 4) {
    char *doc = snapmig_status_json (vm, NULL, &err);

    rc = doc ? 0 : fail ("status", err);
    if (doc)
      printf ("%s\n", doc);
    free (doc);
  } else {
    fprintf (stderr, "usage: see the comment at the top of api-move.c\n");
  }
  snapmig_vm_free (vm);
  return rc;
}
