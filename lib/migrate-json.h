/* libsnapmig — the JSON of the migrate commands' results (snapmig-json(7),
 * schemas/snapmig.schema.json): fields only, the caller adds "event" and
 * "time" (lib/report-json.h). */
#ifndef SM_MIGRATE_JSON_H
#define SM_MIGRATE_JSON_H

#include <json-c/json.h>

#include "migrate-cookie.h"

/* migrate's and migrate-recover's ok result: where the guest runs now
 * (dest-host, dest-qmp, dest-pid, ...), what moved (disk-bytes,
 * ram-bytes), the pause (pause-ms, pause-us; null when unknown), the
 * post-copy and transport facts and SECONDS in all.  Caller puts. */
json_object *sm_mig_result_json (const SmMigCookie *c, double seconds)
  G_GNUC_WARN_UNUSED_RESULT;

/* migrate-start-postcopy's document: {"qmp": QMP, "requested": true}. */
json_object *sm_mig_start_postcopy_json (const char *qmp)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_MIGRATE_JSON_H */
