/* libsnapmig — snapshot metadata as JSON documents (snapshot-json.h). */
#include "snapshot-json.h"

#include "report-json.h"

json_object *
sm_snapshot_def_to_json (const SmSnapshotDef *def, bool current)
{
  json_object *obj = json_object_new_object ();
  json_object *disks = json_object_new_array ();
  g_autofree char *when = sm_report_time_from_unix (def->creation_time);
  guint i;

  json_object_object_add (obj, "name", json_object_new_string (def->name));
  json_object_object_add (obj, "current", json_object_new_boolean (current));
  json_object_object_add (obj, "creation-time",
                          sm_report_string_or_null (when));
  json_object_object_add (obj, "creation-time-seconds",
                          def->creation_time >= 0
                          ? json_object_new_int64 (def->creation_time) : NULL);
  json_object_object_add (obj, "state", sm_report_string_or_null (def->state));
  json_object_object_add (obj, "parent",
                          sm_report_string_or_null (def->parent));
  json_object_object_add (obj, "description",
                          sm_report_string_or_null (def->description));
  for (i = 0; def->disks && i < def->disks->len; i++) {
    const SmSnapshotDisk *disk = g_ptr_array_index (def->disks, i);
    json_object *d = json_object_new_object ();
    json_object *mirror = NULL;

    json_object_object_add (d, "name", json_object_new_string (disk->name));
    json_object_object_add (d, "snapshot",
                            disk->snapshot == SM_SNAPSHOT_LOCATION_DEFAULT
                            ? NULL
                            : sm_report_string_or_null (
                                sm_snapshot_location_to_string (
                                  disk->snapshot)));
    json_object_object_add (d, "source",
                            sm_report_string_or_null (disk->source));
    json_object_object_add (d, "format",
                            sm_report_string_or_null (disk->driver_type));
    if (disk->mirror_file) {
      mirror = json_object_new_object ();
      json_object_object_add (mirror, "file",
                              json_object_new_string (disk->mirror_file));
      json_object_object_add (mirror, "format",
                              sm_report_string_or_null (disk->mirror_format));
    }
    json_object_object_add (d, "mirror", mirror);
    json_object_array_add (disks, d);
  }
  json_object_object_add (obj, "disks", disks);
  return obj;
}

json_object *
sm_snapshot_list_to_json (const char *vm, const GPtrArray *defs,
                          const char *current)
{
  json_object *doc = json_object_new_object ();
  json_object *arr = json_object_new_array ();

  for (guint i = 0; defs && i < defs->len; i++) {
    const SmSnapshotDef *def = g_ptr_array_index (defs, i);

    json_object_array_add (arr, sm_snapshot_def_to_json (
                             def, g_strcmp0 (current, def->name) == 0));
  }
  json_object_object_add (doc, "vm", sm_report_string_or_null (vm));
  json_object_object_add (doc, "current", sm_report_string_or_null (current));
  json_object_object_add (doc, "snapshots", arr);
  return doc;
}

json_object *
sm_snapshot_xml_to_json (const char *name, const char *xml)
{
  json_object *doc = json_object_new_object ();

  json_object_object_add (doc, "snapshot", json_object_new_string (name));
  json_object_object_add (doc, "xml", json_object_new_string (xml));
  return doc;
}

json_object *
sm_snapshot_deleted_to_json (const char *name, const SmSnapshotDef *def)
{
  json_object *doc = json_object_new_object ();
  json_object *left = json_object_new_array ();

  for (guint i = 0; def && def->disks && i < def->disks->len; i++) {
    const SmSnapshotDisk *disk = g_ptr_array_index (def->disks, i);
    json_object *m;

    if (!disk->mirror_file)
      continue;
    m = json_object_new_object ();
    json_object_object_add (m, "disk", json_object_new_string (disk->name));
    json_object_object_add (m, "mirror",
                            json_object_new_string (disk->mirror_file));
    json_object_array_add (left, m);
  }
  json_object_object_add (doc, "snapshot", json_object_new_string (name));
  json_object_object_add (doc, "deleted", json_object_new_boolean (true));
  json_object_object_add (doc, "moves-left", left);
  return doc;
}

json_object *
sm_snapshot_current_to_json (const char *vm, const char *name)
{
  json_object *doc = json_object_new_object ();

  json_object_object_add (doc, "vm", sm_report_string_or_null (vm));
  json_object_object_add (doc, "current", sm_report_string_or_null (name));
  return doc;
}
