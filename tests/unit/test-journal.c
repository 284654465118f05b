/* Unit tests for lib/journal.c: records survive as whole lines, a torn last
 * line (a crash in the middle of a write) is dropped, a bad line elsewhere is
 * an error, listing and finishing.
 */
#include <string.h>
#include <unistd.h>
#include <glib.h>

#include "harness.h"
#include "journal.h"
#include "json-util.h"
#include "qmp.h"

static json_object *
record (const char *key, int value)
{
  json_object *o = json_object_new_object ();

  json_object_object_add (o, key, json_object_new_int (value));
  return o;
}

static void
test_append_load (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *jdir = g_build_filename (dir, "journal", NULL);
  g_autofree char *opid = sm_journal_new_opid ();
  g_autoptr(GError) err = NULL;
  g_autoptr(SmJournal) j = sm_journal_create (jdir, opid, record ("op", 1),
                                              &err);
  g_autoptr(json_object) recs = NULL;
  g_auto(GStrv) list = NULL;
  g_autofree char *path = NULL;
  json_object *v;

  g_assert_no_error (err);
  g_assert_true (sm_journal_append (j, record ("step", 1), &err));
  g_assert_true (sm_journal_append (j, record ("step", 2), &err));
  path = g_strdup (sm_journal_path (j));
  recs = sm_journal_load (path, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (json_object_array_length (recs), ==, 3);
  g_assert_true (json_object_object_get_ex (json_object_array_get_idx (recs, 2),
                                            "step", &v));
  g_assert_cmpint (json_object_get_int (v), ==, 2);
  /* Every record carries its time. */
  g_assert_true (json_object_object_get_ex (json_object_array_get_idx (recs, 0),
                                            "time", &v));

  list = sm_journal_list (jdir, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (g_strv_length (list), ==, 1);
  g_assert_cmpstr (list[0], ==, path);

  /* The same operation id cannot be journaled twice. */
  {
    g_autoptr(SmJournal) again = sm_journal_create (jdir, opid,
                                                    record ("op", 2), &err);

    g_assert_null (again);
    g_assert_error (err, SM_ERROR, SM_ERROR_IO);
    g_clear_error (&err);
  }

  g_assert_true (sm_journal_finish (g_steal_pointer (&j), &err));
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
}

/* Several records in one write (one sync, or none): all load, in order,
 * each with its time; a record written without a sync is there too. */
static void
test_append_many (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *jdir = g_build_filename (dir, "journal", NULL);
  g_autofree char *opid = sm_journal_new_opid ();
  g_autoptr(GError) err = NULL;
  g_autoptr(SmJournal) j = sm_journal_create (jdir, opid, record ("op", 1),
                                              &err);
  g_autoptr(json_object) recs = NULL;
  json_object *three[3];
  json_object *one[1];
  json_object *v;
  int i;

  g_assert_no_error (err);
  for (i = 0; i < 3; i++)
    three[i] = record ("step", i + 1);
  g_assert_true (sm_journal_append_many (j, three, 3, true, &err));
  g_assert_no_error (err);
  g_assert_null (three[0]);            /* consumed */
  one[0] = record ("step", 4);
  g_assert_true (sm_journal_append_many (j, one, 1, false, &err));
  recs = sm_journal_load (sm_journal_path (j), &err);
  g_assert_no_error (err);
  g_assert_cmpuint (json_object_array_length (recs), ==, 5);
  for (i = 1; i < 5; i++) {
    json_object *rec = json_object_array_get_idx (recs, i);

    g_assert_true (json_object_object_get_ex (rec, "step", &v));
    g_assert_cmpint (json_object_get_int (v), ==, i);
    g_assert_true (json_object_object_get_ex (rec, "time", &v));
  }
}

static void
test_torn_and_bad_lines (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *torn = g_build_filename (dir, "torn.journal", NULL);
  g_autofree char *bad = g_build_filename (dir, "bad.journal", NULL);
  g_autofree char *missing = g_build_filename (dir, "none", NULL);
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) recs = NULL;
  g_auto(GStrv) list = NULL;

  g_assert_true (g_file_set_contents (torn, "{\"op\":1}\n{\"step\":1}\n{\"ste",
                                      -1, NULL));
  recs = sm_journal_load (torn, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (json_object_array_length (recs), ==, 2);

  g_assert_true (g_file_set_contents (bad, "{\"op\":1}\nnot json\n{\"s\":1}\n",
                                      -1, NULL));
  g_assert_null (sm_journal_load (bad, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_assert_nonnull (strstr (err->message, "line 2"));
  g_clear_error (&err);

  list = sm_journal_list (missing, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (g_strv_length (list), ==, 0);
}

/* Damage a crash cannot make is an error naming the line, never records
 * silently lost: a line cut in the middle of the file, an empty line, a NUL
 * byte (C-string reading would end the file there).  A tail the file system
 * never wrote (zeros, no newline) is a torn last write and dropped. */
static void
test_damage (void)
{
  static const struct {
    const char *data;
    size_t len;
    int records;             /* -1: damaged */
    const char *line;
  } cases[] = {
    { "{\"op\":1}\n{\"st\n{\"step\":2}\n", 0, -1, "line 2" },
    { "{\"op\":1}\n\n{\"step\":2}\n", 0, -1, "line 2" },
    { "{\"op\":1}\n{\"step\":1}\0\n{\"step\":2}\n", 32, -1, "line 2" },
    { "{\"op\":1}\n{\"step\":1} x\n", 0, -1, "line 2" },
    { "{\"op\":1}\n[1]\n", 0, -1, "line 2" },
    { "{\"op\":1}\n{\"step\":1}\n\0\0\0\0", 24, 2, NULL },
    { "{\"op\":1}\n{\"step\":1}", 0, 2, NULL },
    { "", 0, 0, NULL },
  };
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "d.journal", NULL);
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) recs = NULL;
    gssize len = cases[i].len ? (gssize) cases[i].len : -1;

    g_assert_true (g_file_set_contents (path, cases[i].data, len, NULL));
    recs = sm_journal_load (path, &err);
    if (cases[i].records < 0) {
      g_assert_null (recs);
      g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
      g_assert_nonnull (strstr (err->message, cases[i].line));
      g_assert_nonnull (strstr (err->message, path));
    } else {
      g_assert_no_error (err);
      g_assert_cmpint ((int) json_object_array_length (recs), ==,
                       cases[i].records);
    }
  }
}

/* recover appends to the journal it finishes: a torn last line is cut off
 * first, so that the new record is a line of its own and the journal still
 * loads. */
static void
test_reopen (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "r.journal", NULL);
  g_autofree char *missing = g_build_filename (dir, "none.journal", NULL);
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) recs = NULL;
  g_autoptr(SmJournal) j = NULL;

  g_assert_true (g_file_set_contents (path, "{\"op\":1}\n{\"step\":1}\n{\"st",
                                      -1, NULL));
  j = sm_journal_reopen (path, &err);
  g_assert_no_error (err);
  g_assert_true (sm_journal_append (j, record ("phase", 2), &err));
  g_assert_no_error (err);
  recs = sm_journal_load (path, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (json_object_array_length (recs), ==, 3);
  {
    int64_t v = 0;

    g_assert_true (sm_json_get_int64 (json_object_array_get_idx (recs, 2),
                                      "phase", &v));
    g_assert_cmpint (v, ==, 2);
  }
  g_assert_null (sm_journal_reopen (missing, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/journal/append-load", test_append_load);
  g_test_add_func ("/journal/append-many", test_append_many);
  g_test_add_func ("/journal/torn-and-bad-lines", test_torn_and_bad_lines);
  g_test_add_func ("/journal/damage", test_damage);
  g_test_add_func ("/journal/reopen", test_reopen);
  return g_test_run ();
}
