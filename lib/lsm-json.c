/* libsnapmig — a disk move's events and results as JSON (lsm-json.h). */
#include "lsm-json.h"

#include "report-json.h"

json_object *
sm_lsm_disk_created_json (const SmLsmDisk *d)
{
  json_object *o = json_object_new_object ();

  json_object_object_add (o, "disk", json_object_new_string (d->name));
  json_object_object_add (o, "active", sm_report_string_or_null (d->new_top));
  json_object_object_add (o, "mirror", sm_report_string_or_null (d->mirror));
  json_object_object_add (o, "job", sm_report_string_or_null (
                            d->mirror ? d->job_id : NULL));
  return o;
}

json_object *
sm_lsm_disk_active_json (const SmLsmDisk *d, bool pivoted)
{
  json_object *o = json_object_new_object ();

  json_object_object_add (o, "disk", json_object_new_string (d->name));
  json_object_object_add (o, "active", sm_report_string_or_null (
                            pivoted ? d->mirror : d->new_top));
  return o;
}

json_object *
sm_lsm_removed_json (const char *file)
{
  json_object *o = json_object_new_object ();

  json_object_object_add (o, "file", json_object_new_string (file));
  return o;
}

json_object *
sm_lsm_kept_json (const SmLsmKeptFile *k)
{
  json_object *o = json_object_new_object ();

  json_object_object_add (o, "file", json_object_new_string (k->path));
  json_object_object_add (o, "why", json_object_new_string (k->why));
  return o;
}

json_object *
sm_lsm_pivot_result_json (const char *snapshot, const SmLsmPivotResult *r)
{
  json_object *o = json_object_new_object ();
  json_object *removed = json_object_new_array ();
  bool paused = r->pause_us >= 0;

  json_object_object_add (o, "snapshot", json_object_new_string (snapshot));
  json_object_object_add (o, "pause-ms", paused
                          ? json_object_new_int64 (r->pause_ms) : NULL);
  json_object_object_add (o, "pause-us", paused
                          ? json_object_new_int64 (r->pause_us) : NULL);
  json_object_object_add (o, "pause-from",
                          sm_report_string_or_null (r->pause_from));
  for (guint i = 0; r->removed && i < r->removed->len; i++)
    json_object_array_add (removed,
                           json_object_new_string (r->removed->pdata[i]));
  json_object_object_add (o, "removed", removed);
  return o;
}

json_object *
sm_lsm_snapshot_result_json (const char *snapshot, int ready)
{
  json_object *o = json_object_new_object ();

  json_object_object_add (o, "snapshot", json_object_new_string (snapshot));
  if (ready >= 0)
    json_object_object_add (o, "ready", json_object_new_boolean (ready));
  return o;
}

json_object *
sm_lsm_status_idle (void)
{
  json_object *o = json_object_new_object ();

  json_object_object_add (o, "snapshot", NULL);
  json_object_object_add (o, "moving", json_object_new_boolean (false));
  return o;
}
