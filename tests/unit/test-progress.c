/* Unit tests for cli/progress.c: JSON lines, the quiet summary, and the
 * terminal bars (drawn into a real pseudo-terminal).
 *
 * The progress display is CLI code, which test programs are not linked
 * with, so the two CLI files it needs are compiled in here.
 */
#include "../../cli/common.c"
#include "../../cli/progress.c"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <termios.h>

#include "harness.h"

static char *tmp_top;

/* Runs FN in a forked child with stdout and stderr sent to files, and
 * returns what it printed (caller frees).  The child must exit cleanly.
 * (GLib 2.74's g_test_trap_subprocess cannot hand the output back.) */
static void
run_child (void (*fn) (void), char **out, char **err)
{
  static int n;
  g_autofree char *out_path = g_strdup_printf ("%s/out%d", tmp_top, n);
  g_autofree char *err_path = g_strdup_printf ("%s/err%d", tmp_top, n++);
  int status;
  pid_t pid;

  fflush (stdout);
  fflush (stderr);
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0) {
    int o = open (out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open (err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    /* _exit skips the autofree cleanups: free by hand, so that a leak
     * check of the child stays clean. */
    g_clear_pointer (&out_path, g_free);
    g_clear_pointer (&err_path, g_free);
    if (o < 0 || e < 0 || dup2 (o, STDOUT_FILENO) < 0 ||
        dup2 (e, STDERR_FILENO) < 0)
      _exit (98);
    fn ();
    fflush (stdout);
    fflush (stderr);
    _exit (0);
  }
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
  g_assert_true (g_file_get_contents (out_path, out, NULL, NULL));
  g_assert_true (g_file_get_contents (err_path, err, NULL, NULL));
}

/* Splits captured output into lines; drops the empty last one. */
static GPtrArray *
lines_of (const char *text)
{
  g_auto(GStrv) parts = g_strsplit (text, "\n", -1);
  GPtrArray *lines = g_ptr_array_new_with_free_func (g_free);
  size_t i;

  for (i = 0; parts[i]; i++)
    if (*parts[i])
      g_ptr_array_add (lines, g_strdup (parts[i]));
  return lines;
}

static const char *
str_field (json_object *obj, const char *key)
{
  json_object *v;

  g_assert_true (json_object_object_get_ex (obj, key, &v));
  return json_object_get_string (v);
}

static void
json_child (void)
{
  g_autoptr(SmProgress) p = sm_progress_new (true);
  int i;

  /* A thousand updates in a row: the rate limit lets few through. */
  for (i = 0; i <= 1000; i++)
    sm_progress_update (p, "vda mirror", (uint64_t) i * 1000, 1000000);
  sm_progress_done (p, "vda mirror", "ready");
  sm_progress_fail (p, "base.qcow2 copy", "disk full");
  {
    json_object *f = json_object_new_object ();

    json_object_object_add (f, "disk", json_object_new_string ("vda"));
    json_object_object_add (f, "to", json_object_new_string ("/dom/b/vda.qcow2"));
    sm_progress_event (p, "pivot", "vda now on B", f);
  }
}

static void
test_json (void)
{
  g_autoptr(GPtrArray) lines = NULL;
  g_autoptr(json_object) first = NULL;
  g_autoptr(json_object) done = NULL;
  g_autoptr(json_object) fail = NULL;
  g_autoptr(json_object) event = NULL;
  guint n;

  g_autofree char *out = NULL;
  g_autofree char *err = NULL;

  run_child (json_child, &out, &err);
  g_assert_cmpstr (err, ==, "");
  lines = lines_of (out);
  n = lines->len;
  g_assert_cmpuint (n, >=, 4);
  g_assert_cmpuint (n, <, 100);

  first = json_tokener_parse (g_ptr_array_index (lines, 0));
  g_assert_nonnull (first);
  g_assert_cmpstr (str_field (first, "event"), ==, "progress");
  g_assert_cmpstr (str_field (first, "item"), ==, "vda mirror");
  g_assert_cmpstr (str_field (first, "done"), ==, "0");
  g_assert_cmpstr (str_field (first, "total"), ==, "1000000");

  done = json_tokener_parse (g_ptr_array_index (lines, n - 3));
  g_assert_nonnull (done);
  g_assert_cmpstr (str_field (done, "event"), ==, "done");
  g_assert_cmpstr (str_field (done, "done"), ==, "1000000");
  g_assert_cmpstr (str_field (done, "message"), ==, "ready");

  fail = json_tokener_parse (g_ptr_array_index (lines, n - 2));
  g_assert_nonnull (fail);
  g_assert_cmpstr (str_field (fail, "event"), ==, "fail");
  g_assert_cmpstr (str_field (fail, "item"), ==, "base.qcow2 copy");
  g_assert_cmpstr (str_field (fail, "message"), ==, "disk full");

  event = json_tokener_parse (g_ptr_array_index (lines, n - 1));
  g_assert_nonnull (event);
  g_assert_cmpstr (str_field (event, "event"), ==, "pivot");
  g_assert_cmpstr (str_field (event, "message"), ==, "vda now on B");
  g_assert_cmpstr (str_field (event, "disk"), ==, "vda");
  g_assert_cmpstr (str_field (event, "to"), ==, "/dom/b/vda.qcow2");
}

static void
quiet_child (void)
{
  g_autoptr(SmProgress) p = sm_progress_new (false);

  sm_progress_update (p, "vda mirror", 10, 100);
  sm_progress_update (p, "vda mirror", 50, 100);
  sm_progress_done (p, "vda mirror", "ready");
  sm_progress_fail (p, "vdb mirror", NULL);
  sm_progress_event (p, "pivot", "vda now on B", NULL);
}

/* Neither a terminal nor --json (a pipe in a script): nothing but the
 * summary lines, and events as plain lines on stdout. */
static void
test_quiet (void)
{
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;

  run_child (quiet_child, &out, &err);
  g_assert_cmpstr (out, ==, "vda now on B\n");
  g_assert_true (g_pattern_match_simple (
    "vda mirror: done: ready (100 B/100 B in *)\nvdb mirror: failed\n", err));
}

/* The width of the terminal tty_child draws on. */
static unsigned short tty_cols = 80;

static void
tty_child (void)
{
  g_autoptr(GString) out = g_string_new (NULL);
  struct winsize ws = { .ws_row = 24, .ws_col = tty_cols };
  int master = posix_openpt (O_RDWR | O_NOCTTY);
  int slave, flags;
  char buf[4096];
  ssize_t n;

  g_assert_cmpint (master, >=, 0);
  g_assert_cmpint (grantpt (master), ==, 0);
  g_assert_cmpint (unlockpt (master), ==, 0);
  slave = open (ptsname (master), O_RDWR | O_NOCTTY);
  g_assert_cmpint (slave, >=, 0);
  g_assert_cmpint (ioctl (slave, TIOCSWINSZ, &ws), ==, 0);
  g_assert_cmpint (dup2 (slave, STDERR_FILENO), ==, STDERR_FILENO);

  {
    g_autoptr(SmProgress) p = sm_progress_new (false);

    sm_progress_update (p, "vda mirror", 0, 1 << 30);
    sm_progress_update (p, "a-very-long-disk-name-that-goes-on-and-on copy",
                        1 << 20, 1 << 30);
    sm_progress_done (p, "vda mirror", "ready");
  }

  flags = fcntl (master, F_GETFL);
  g_assert_cmpint (fcntl (master, F_SETFL, flags | O_NONBLOCK), ==, 0);
  while ((n = read (master, buf, sizeof buf)) > 0)
    g_string_append_len (out, buf, n);
  /* The test reads what the terminal got from stdout. */
  fwrite (out->str, 1, out->len, stdout);
  fflush (stdout);
}

static void
test_tty (void)
{
  g_autoptr(GPtrArray) lines = NULL;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  guint i;

  run_child (tty_child, &out, &err);
  g_assert_nonnull (strstr (out, "vda mirror"));
  g_assert_nonnull (strstr (out, "0 B/1.0 GiB"));
  /* Redrawn in place: cursor up over the block, lines cleared. */
  g_assert_nonnull (strstr (out, "\033[1A"));
  g_assert_nonnull (strstr (out, "\033[2K"));
  g_assert_nonnull (strstr (out, "100% 1.0 GiB/1.0 GiB done: ready"));
  /* No line may wrap on the 80-column terminal (it would break the cursor
   * arithmetic), however long a name is: strip the escapes and measure. */
  lines = lines_of (out);
  for (i = 0; i < lines->len; i++) {
    g_autoptr(GRegex) re = g_regex_new ("\033\\[[0-9]*[A-Za-z]|\r", 0, 0, NULL);
    g_autofree char *plain = g_regex_replace_literal (
      re, g_ptr_array_index (lines, i), -1, 0, "", 0, NULL);

    g_assert_cmpuint (strlen (plain), <, 80);
  }
}

/* On a 40-column terminal every line still fits, and a long name keeps its
 * start and its end around "...". */
static void
test_tty_narrow (void)
{
  g_autoptr(GPtrArray) lines = NULL;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autoptr(GRegex) re = g_regex_new ("\033\\[[0-9]*[A-Za-z]|\r", 0, 0, NULL);
  guint i;

  tty_cols = 40;
  run_child (tty_child, &out, &err);
  tty_cols = 80;
  g_assert_nonnull (strstr (out, "a-ver... copy"));
  lines = lines_of (out);
  g_assert_cmpuint (lines->len, >, 0);
  for (i = 0; i < lines->len; i++) {
    g_autofree char *plain = g_regex_replace_literal (
      re, g_ptr_array_index (lines, i), -1, 0, "", 0, NULL);

    g_assert_cmpuint (strlen (plain), <, 40);
  }
}

static void
test_format_duration (void)
{
  static const struct { double s; const char *want; } cases[] = {
    { -1, "--:--" }, { 0, "0:00" }, { 3.4, "0:03" }, { 59.6, "1:00" },
    { 3599, "59:59" }, { 3600, "1:00:00" }, { 36000 + 61, "10:01:01" },
  };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *got = format_duration (cases[i].s);

    g_assert_cmpstr (got, ==, cases[i].want);
  }
}

/* The moving average follows a steady rate and does not jump on a burst. */
static void
test_rate_average (void)
{
  Item it = { 0 };
  gint64 t = 1000000;
  int i;

  it.sample_us = t;
  for (i = 1; i <= 50; i++)
    item_sample_rate (&it, (uint64_t) i * 10 * 1024 * 1024,
                      t + i * (G_USEC_PER_SEC / 2));
  /* 10 MiB every half second = 20 MiB/s. */
  g_assert_cmpfloat (it.rate, >, 20.0 * 1024 * 1024 - 1024);
  g_assert_cmpfloat (it.rate, <, 20.0 * 1024 * 1024 + 1024);
  /* One half-second burst of 200 MiB moves the average, not all the way. */
  item_sample_rate (&it, it.sample_done + 200 * 1024 * 1024,
                    t + 51 * (G_USEC_PER_SEC / 2));
  g_assert_cmpfloat (it.rate, >, 20.0 * 1024 * 1024);
  g_assert_cmpfloat (it.rate, <, 100.0 * 1024 * 1024);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmp_top = sm_test_tmpdir ();
  g_test_add_func ("/progress/json", test_json);
  g_test_add_func ("/progress/quiet", test_quiet);
  g_test_add_func ("/progress/tty", test_tty);
  g_test_add_func ("/progress/tty-narrow", test_tty_narrow);
  g_test_add_func ("/progress/format-duration", test_format_duration);
  g_test_add_func ("/progress/rate-average", test_rate_average);
  {
    int rc = g_test_run ();

    g_free (tmp_top);
    return rc;
  }
}
