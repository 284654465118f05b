/* lib/report-json.c: the pieces every --json output shares (snapmig-json(7)):
 * event times, the member order of an event, the error object and
 * document, the result event. */
#include <glib.h>
#include <json-c/json.h>

#include "error.h"
#include "qmp.h"          /* json_object's g_autoptr cleanup */
#include "report-json.h"

#define RFC3339_MS "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}" \
                   "\\.[0-9]{3}Z$"

static const char *
compact (json_object *o)
{
  return json_object_to_json_string_ext (o, JSON_C_TO_STRING_PLAIN |
                                            JSON_C_TO_STRING_NOSLASHESCAPE);
}

static void
test_times (void)
{
  g_autofree char *now = sm_report_time_now ();
  g_autofree char *t = sm_report_time_from_unix (1700000100);
  g_autofree char *none = sm_report_time_from_unix (-1);

  g_assert_true (g_regex_match_simple (RFC3339_MS, now, 0, 0));
  g_assert_cmpstr (t, ==, "2023-11-14T22:15:00Z");
  g_assert_null (none);
}

/* An event made elsewhere (the library's migrate events) gets its time
 * second, after "event", its other members kept in order; one that has a
 * time keeps it. */
static void
test_stamp (void)
{
  g_autoptr(json_object) ev = json_object_new_object ();
  g_autofree char *want = NULL;
  json_object *time = NULL;

  json_object_object_add (ev, "event", json_object_new_string ("phase"));
  json_object_object_add (ev, "phase", json_object_new_string ("ram"));
  json_object_object_add (ev, "n", json_object_new_int (3));
  sm_report_event_stamp (ev);
  g_assert_true (json_object_object_get_ex (ev, "time", &time));
  want = g_strdup_printf ("{\"event\":\"phase\",\"time\":\"%s\","
                          "\"phase\":\"ram\",\"n\":3}",
                          json_object_get_string (time));
  g_assert_cmpstr (compact (ev), ==, want);
  sm_report_event_stamp (ev);
  g_assert_cmpstr (compact (ev), ==, want);
}

static void
test_error (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(GError) plain = g_error_new (SM_ERROR, SM_ERROR_TIMEOUT, "slow");
  g_autoptr(json_object) e = NULL;
  g_autoptr(json_object) f = NULL;
  g_autoptr(json_object) doc = NULL;
  g_autoptr(json_object) u = sm_report_error_json_new ("usage", "bad", NULL);

  sm_error_set_with_object (&err, SM_ERROR_NOT_FOUND, "vda", "no disk %s",
                            "vda");
  /* The error's own object wins over the command's. */
  e = sm_report_error_json (err, "/run/vm.qmp");
  g_assert_cmpstr (compact (e), ==,
                   "{\"code\":\"not-found\",\"message\":\"no disk vda\","
                   "\"object\":\"vda\"}");
  f = sm_report_error_json (plain, "/run/vm.qmp");
  g_assert_cmpstr (compact (f), ==,
                   "{\"code\":\"timeout\",\"message\":\"slow\","
                   "\"object\":\"/run/vm.qmp\"}");
  g_assert_cmpstr (compact (u), ==,
                   "{\"code\":\"usage\",\"message\":\"bad\",\"object\":null}");
  doc = sm_report_error_document (json_object_get (e));
  g_assert_true (json_object_object_get_ex (doc, "error", NULL));
  g_assert_cmpint (json_object_object_length (doc), ==, 1);
}

static void
test_result (void)
{
  json_object *fields = json_object_new_object ();
  g_autoptr(json_object) ok = NULL;
  g_autoptr(json_object) bad = NULL;
  json_object *v = NULL;

  json_object_object_add (fields, "snapshot", json_object_new_string ("m1"));
  ok = sm_report_result_ok (fields);
  g_assert_true (json_object_object_get_ex (ok, "ok", &v));
  g_assert_true (json_object_get_boolean (v));
  g_assert_true (json_object_object_get_ex (ok, "snapshot", &v));
  g_assert_cmpstr (json_object_get_string (v), ==, "m1");
  g_assert_true (json_object_object_get_ex (ok, "time", &v));
  g_assert_true (g_regex_match_simple (RFC3339_MS, json_object_get_string (v),
                                       0, 0));
  bad = sm_report_result_error (sm_report_error_json_new ("busy", "locked",
                                                          "/run/vm.qmp"));
  g_assert_true (json_object_object_get_ex (bad, "ok", &v));
  g_assert_false (json_object_get_boolean (v));
  g_assert_true (json_object_object_get_ex (bad, "error", NULL));
}

static void
test_abs_path (void)
{
  g_autofree char *cwd = g_get_current_dir ();
  g_autofree char *rel = sm_report_abs_path ("a/../b.xml");
  g_autofree char *want = g_build_filename (cwd, "b.xml", NULL);
  g_autofree char *abs = sm_report_abs_path ("/x/y");

  g_assert_cmpstr (rel, ==, want);
  g_assert_cmpstr (abs, ==, "/x/y");
  g_assert_null (sm_report_abs_path (NULL));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/report-json/times", test_times);
  g_test_add_func ("/report-json/stamp", test_stamp);
  g_test_add_func ("/report-json/error", test_error);
  g_test_add_func ("/report-json/result", test_result);
  g_test_add_func ("/report-json/abs-path", test_abs_path);
  return g_test_run ();
}
