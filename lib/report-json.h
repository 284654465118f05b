/* libsnapmig — the pieces of the JSON contract every command's output
 * shares (docs/snapmig-json.7, schemas/snapmig.schema.json): events with
 * their time, the result event that ends a long command's lines, the error
 * object and the error document.  Keys are kebab-case, times RFC 3339 UTC.
 */
#ifndef SM_REPORT_JSON_H
#define SM_REPORT_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-c/json.h>

/* "2026-12-01T07:53:33.123Z": now, UTC, milliseconds.  Caller frees. */
char *sm_report_time_now (void) G_GNUC_WARN_UNUSED_RESULT;

/* The same for a Unix time in seconds ("...:05Z", no fraction); NULL for a
 * negative (unknown) time.  Caller frees. */
char *sm_report_time_from_unix (int64_t t) G_GNUC_WARN_UNUSED_RESULT;

/* Adds "time" (now) to event EV unless it has one, keeping "event" first
 * and "time" second: every event line a command prints. */
void sm_report_event_stamp (json_object *ev);

/* A new event {"event": NAME, "time": now}; caller adds fields and puts. */
json_object *sm_report_event_new (const char *name) G_GNUC_WARN_UNUSED_RESULT;

/* {"code", "message", "object"}: ERR's code name, message and object (its
 * own, else FALLBACK_OBJECT; null when neither).  Caller puts. */
json_object *sm_report_error_json (const GError *err,
                                   const char *fallback_object)
  G_GNUC_WARN_UNUSED_RESULT;

/* The same from the parts, for failures that are no GError (a usage
 * error: code "usage"). */
json_object *sm_report_error_json_new (const char *code, const char *message,
                                       const char *object)
  G_GNUC_WARN_UNUSED_RESULT;

/* A document command's failure: {"error": ERROR} (ERROR consumed). */
json_object *sm_report_error_document (json_object *error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The last line of a long command: {"event":"result","time":...,"ok":true}
 * followed by FIELDS' members (consumed; may be NULL), or with ERROR
 * (consumed) {"event":"result","time":...,"ok":false,"error":ERROR}. */
json_object *sm_report_result_ok (json_object *fields)
  G_GNUC_WARN_UNUSED_RESULT;
json_object *sm_report_result_error (json_object *error)
  G_GNUC_WARN_UNUSED_RESULT;

/* A json string, or json null for NULL. */
json_object *sm_report_string_or_null (const char *s)
  G_GNUC_WARN_UNUSED_RESULT;

/* PATH made absolute against the current directory (already absolute:
 * copied); NULL for NULL.  Caller frees.  File paths in the JSON are
 * absolute (snapmig-json(7)). */
char *sm_report_abs_path (const char *path) G_GNUC_WARN_UNUSED_RESULT;

/* check-xml's entry for one FILE: {"file": absolute path, "valid": bool,
 * "kind": root element or null, "error": {code, message, object} or null}.
 * Caller puts. */
json_object *sm_report_checked_file_json (const char *file, const char *kind,
                                          const GError *err)
  G_GNUC_WARN_UNUSED_RESULT;

/* check-xml's document: {"valid": all FILES valid, "files": FILES
 * (consumed)}; recover's: {"done": [DONE...], "nothing-to-recover": bool}.
 * Caller puts. */
json_object *sm_report_check_xml_json (json_object *files)
  G_GNUC_WARN_UNUSED_RESULT;
json_object *sm_report_recover_json (const char *const *done)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_REPORT_JSON_H */
