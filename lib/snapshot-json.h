/* libsnapmig — the JSON documents of the snapshot metadata commands (list,
 * dumpxml, delete, current): snapmig-json(7), schemas/snapmig.schema.json
 * ($defs/list, dumpxml, delete, current).  Each returns a new object;
 * caller puts. */
#ifndef SM_SNAPSHOT_JSON_H
#define SM_SNAPSHOT_JSON_H

#include <json-c/json.h>

#include "snapshot-xml.h"

/* One snapshot: name, current, creation-time (RFC 3339 UTC) and
 * creation-time-seconds (Unix time; both null when unknown), state,
 * parent, description, disks [{name, snapshot, source, format, mirror:
 * {file, format} or null}]. */
json_object *sm_snapshot_def_to_json (const SmSnapshotDef *def, bool current)
  G_GNUC_WARN_UNUSED_RESULT;

/* list: {"vm": VM, "current": name or null, "snapshots": [...]}, DEFS
 * (SmSnapshotDef *) oldest first. */
json_object *sm_snapshot_list_to_json (const char *vm, const GPtrArray *defs,
                                       const char *current)
  G_GNUC_WARN_UNUSED_RESULT;

/* dumpxml: {"snapshot": NAME, "xml": XML}. */
json_object *sm_snapshot_xml_to_json (const char *name, const char *xml)
  G_GNUC_WARN_UNUSED_RESULT;

/* delete: {"snapshot": NAME, "deleted": true, "moves-left": [{disk,
 * mirror}]}, the moves --metadata-only left running in QEMU (DEF may be
 * NULL: none known). */
json_object *sm_snapshot_deleted_to_json (const char *name,
                                          const SmSnapshotDef *def)
  G_GNUC_WARN_UNUSED_RESULT;

/* current: {"vm": VM, "current": NAME or null}. */
json_object *sm_snapshot_current_to_json (const char *vm, const char *name)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_SNAPSHOT_JSON_H */
