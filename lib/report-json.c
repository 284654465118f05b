/* libsnapmig — the JSON contract's shared pieces (report-json.h). */
#include "report-json.h"

#include <string.h>

#include "error.h"

char *
sm_report_time_now (void)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *stamp = g_date_time_format (now, "%Y-%m-%dT%H:%M:%S");

  return g_strdup_printf ("%s.%03dZ", stamp,
                          g_date_time_get_microsecond (now) / 1000);
}

char *
sm_report_time_from_unix (int64_t t)
{
  g_autoptr(GDateTime) dt = NULL;

  if (t < 0)
    return NULL;
  dt = g_date_time_new_from_unix_utc (t);
  return dt ? g_date_time_format (dt, "%Y-%m-%dT%H:%M:%SZ") : NULL;
}

void
sm_report_event_stamp (json_object *ev)
{
  g_autofree char *now = NULL;
  g_autoptr(GPtrArray) keys = NULL;
  g_autoptr(GPtrArray) vals = NULL;

  if (!ev || !json_object_is_type (ev, json_type_object) ||
      json_object_object_get_ex (ev, "time", NULL))
    return;
  /* json-c keeps insertion order: take the members out and put them back
   * with "event" and "time" first, so that a line reads the same whoever
   * made it. */
  now = sm_report_time_now ();
  keys = g_ptr_array_new_with_free_func (g_free);
  vals = g_ptr_array_new ();
  json_object_object_foreach (ev, key, val) {
    g_ptr_array_add (keys, g_strdup (key));
    g_ptr_array_add (vals, json_object_get (val));
  }
  for (guint i = 0; i < keys->len; i++)
    json_object_object_del (ev, keys->pdata[i]);
  for (guint i = 0; i < keys->len; i++)
    if (strcmp (keys->pdata[i], "event") == 0)
      json_object_object_add (ev, "event", json_object_get (vals->pdata[i]));
  json_object_object_add (ev, "time", json_object_new_string (now));
  for (guint i = 0; i < keys->len; i++) {
    if (strcmp (keys->pdata[i], "event") != 0)
      json_object_object_add (ev, keys->pdata[i],
                              json_object_get (vals->pdata[i]));
    json_object_put (vals->pdata[i]);
  }
}

json_object *
sm_report_event_new (const char *name)
{
  json_object *ev = json_object_new_object ();
  g_autofree char *now = sm_report_time_now ();

  json_object_object_add (ev, "event", json_object_new_string (name));
  json_object_object_add (ev, "time", json_object_new_string (now));
  return ev;
}

json_object *
sm_report_string_or_null (const char *s)
{
  return s ? json_object_new_string (s) : NULL;
}

json_object *
sm_report_error_json_new (const char *code, const char *message,
                          const char *object)
{
  json_object *e = json_object_new_object ();

  json_object_object_add (e, "code", json_object_new_string (code));
  json_object_object_add (e, "message", json_object_new_string (message));
  json_object_object_add (e, "object", sm_report_string_or_null (object));
  return e;
}

json_object *
sm_report_error_json (const GError *err, const char *fallback_object)
{
  const char *object = sm_error_get_object (err);

  return sm_report_error_json_new (sm_error_code_name (err),
                                   err ? err->message : "unknown error",
                                   object ? object : fallback_object);
}

json_object *
sm_report_error_document (json_object *error)
{
  json_object *doc = json_object_new_object ();

  json_object_object_add (doc, "error", error);
  return doc;
}

json_object *
sm_report_result_ok (json_object *fields)
{
  json_object *r = sm_report_event_new ("result");

  json_object_object_add (r, "ok", json_object_new_boolean (true));
  if (fields) {
    json_object_object_foreach (fields, key, val) {
      json_object_object_add (r, key, json_object_get (val));
    }
    json_object_put (fields);
  }
  return r;
}

json_object *
sm_report_result_error (json_object *error)
{
  json_object *r = sm_report_event_new ("result");

  json_object_object_add (r, "ok", json_object_new_boolean (false));
  json_object_object_add (r, "error", error);
  return r;
}

char *
sm_report_abs_path (const char *path)
{
  g_autofree char *cwd = NULL;

  if (!path)
    return NULL;
  if (g_path_is_absolute (path))
    return g_strdup (path);
  cwd = g_get_current_dir ();
  return g_canonicalize_filename (path, cwd);
}

json_object *
sm_report_checked_file_json (const char *file, const char *kind,
                             const GError *err)
{
  json_object *o = json_object_new_object ();
  g_autofree char *abs = sm_report_abs_path (file);

  json_object_object_add (o, "file", json_object_new_string (abs));
  json_object_object_add (o, "valid", json_object_new_boolean (err == NULL));
  json_object_object_add (o, "kind", sm_report_string_or_null (kind));
  json_object_object_add (o, "error",
                          err ? sm_report_error_json (err, abs) : NULL);
  return o;
}

json_object *
sm_report_check_xml_json (json_object *files)
{
  json_object *doc = json_object_new_object ();
  bool valid = true;

  for (size_t i = 0; i < json_object_array_length (files); i++) {
    json_object *v = NULL;

    json_object_object_get_ex (json_object_array_get_idx (files, i), "valid",
                               &v);
    valid = valid && json_object_get_boolean (v);
  }
  json_object_object_add (doc, "valid", json_object_new_boolean (valid));
  json_object_object_add (doc, "files", files);
  return doc;
}

json_object *
sm_report_recover_json (const char *const *done)
{
  json_object *doc = json_object_new_object ();
  json_object *arr = json_object_new_array ();

  for (size_t i = 0; done && done[i]; i++)
    json_object_array_add (arr, json_object_new_string (done[i]));
  json_object_object_add (doc, "done", arr);
  json_object_object_add (doc, "nothing-to-recover",
                          json_object_new_boolean (!done || !done[0]));
  return doc;
}
