/* libsnapmig — the JSON of a disk move's commands (create, pivot, abort):
 * the fields of their events and results, as snapmig-json(7) documents
 * them and schemas/snapmig.schema.json checks them.  Each function returns
 * a new object (caller puts) holding only the fields; the caller adds
 * "event" and "time" (lib/report-json.h). */
#ifndef SM_LSM_JSON_H
#define SM_LSM_JSON_H

#include "lsm.h"

/* A disk after create: {"disk","active","mirror","job"} (mirror and job
 * null without a mirror). */
json_object *sm_lsm_disk_created_json (const SmLsmDisk *d)
  G_GNUC_WARN_UNUSED_RESULT;

/* A disk after pivot ({"disk","active": its mirror}) or abort
 * ({"disk","active": the snapshot's new top}). */
json_object *sm_lsm_disk_active_json (const SmLsmDisk *d, bool pivoted)
  G_GNUC_WARN_UNUSED_RESULT;

/* {"file"} of a file --delete-source removed; {"file","why"} of one kept. */
json_object *sm_lsm_removed_json (const char *file) G_GNUC_WARN_UNUSED_RESULT;
json_object *sm_lsm_kept_json (const SmLsmKeptFile *k)
  G_GNUC_WARN_UNUSED_RESULT;

/* pivot's result: {"snapshot","pause-ms","pause-us","pause-from",
 * "removed"} (pauses null when the guest was not paused; removed an array
 * of absolute paths, empty without --delete-source). */
json_object *sm_lsm_pivot_result_json (const char *snapshot,
                                       const SmLsmPivotResult *r)
  G_GNUC_WARN_UNUSED_RESULT;

/* create's and abort's results: {"snapshot"} and, for create, "ready"
 * (true after --wait: mirrors ready and copies done). */
json_object *sm_lsm_snapshot_result_json (const char *snapshot, int ready)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_LSM_JSON_H */
