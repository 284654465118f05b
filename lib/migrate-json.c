/* libsnapmig — the migrate commands' results as JSON (migrate-json.h). */
#include "migrate-json.h"

#include "report-json.h"

json_object *
sm_mig_result_json (const SmMigCookie *c, double seconds)
{
  json_object *r = json_object_new_object ();
  const char *qmp = c->dest_user_qmp ? c->dest_user_qmp : c->dest_qmp;
  bool paused = c->pause_us >= 0;

  json_object_object_add (r, "id", json_object_new_string (c->id));
  json_object_object_add (r, "dest-host",
                          sm_report_string_or_null (c->dest_host));
  json_object_object_add (r, "dest-qmp", sm_report_string_or_null (qmp));
  json_object_object_add (r, "dest-snapmig-qmp",
                          sm_report_string_or_null (c->dest_qmp));
  json_object_object_add (r, "dest-pid", json_object_new_int64 (c->dest_pid));
  json_object_object_add (r, "dest-run-dir",
                          sm_report_string_or_null (c->dest_run_dir));
  json_object_object_add (r, "dest-domain",
                          sm_report_string_or_null (c->dest_domain));
  json_object_object_add (r, "storage", json_object_new_string (
                            sm_mig_storage_to_string (c->storage)));
  json_object_object_add (r, "disk-bytes",
                          json_object_new_int64 ((int64_t) c->disk_bytes));
  json_object_object_add (r, "ram-bytes",
                          json_object_new_int64 ((int64_t) c->ram_bytes));
  json_object_object_add (r, "pause-ms", paused ? json_object_new_int64 (
                            (c->pause_us + 500) / 1000) : NULL);
  json_object_object_add (r, "pause-us", paused
                          ? json_object_new_int64 (c->pause_us) : NULL);
  json_object_object_add (r, "postcopy",
                          json_object_new_boolean (c->postcopy_used));
  json_object_object_add (r, "postcopy-requests", json_object_new_int64 (
                            (int64_t) c->postcopy_requests));
  json_object_object_add (r, "recoveries",
                          json_object_new_int (c->recoveries));
  json_object_object_add (r, "transport", json_object_new_string (
                            c->transport ? c->transport : "tcp"));
  json_object_object_add (r, "link-resumes",
                          json_object_new_int (c->link_resumes));
  /* Counted by snapmig's relay only (null over ssh's own forwards or
   * without a tunnel). */
  json_object_object_add (r, "tunnel-bytes", c->tunnel_bytes > 0
                          ? json_object_new_int64 (c->tunnel_bytes) : NULL);
  json_object_object_add (r, "postcopy-refused",
                          sm_report_string_or_null (c->postcopy_refused));
  {
    g_autofree char *text = g_strdup_printf ("%.3f", seconds);

    json_object_object_add (r, "seconds",
                            json_object_new_double_s (seconds, text));
  }
  return r;
}

json_object *
sm_mig_start_postcopy_json (const char *qmp)
{
  json_object *d = json_object_new_object ();

  json_object_object_add (d, "qmp", sm_report_string_or_null (qmp));
  json_object_object_add (d, "requested", json_object_new_boolean (true));
  return d;
}
