/* libsnapmig's public API: validate (include/snapmig.h). */
#include "api-private.h"

int
snapmig_validate (const char *const *domains, snapmig_vm *const *vms,
                  unsigned flags, char **report, snapmig_error **error)
{
  g_autoptr(GArray) targets = g_array_new (FALSE, FALSE, sizeof (SmOpTarget));
  g_autoptr(SmValidateReport) r = NULL;
  const char *state_dir = NULL;
  bool strict = flags & SNAPMIG_VALIDATE_STRICT;
  GError *err = NULL;
  size_t i;

  if (report)
    *report = NULL;
  if (!domains || !domains[0]) {
    sm_api_error_invalid (error, "validate: no storage domain given");
    return -1;
  }
  if (flags & ~(unsigned) SNAPMIG_VALIDATE_STRICT) {
    sm_api_error_invalid (error, "validate: unknown flags 0x%x", flags);
    return -1;
  }
  /* The state directory (snapshots and moves that keep images in use) is
   * the first VM's that names one, else the default. */
  for (i = 0; vms && vms[i]; i++) {
    SmOpTarget t = sm_api_target (vms[i]);

    g_array_append_val (targets, t);
    if (!state_dir)
      state_dir = vms[i]->state_dir;
  }
  r = sm_op_validate (domains, (const SmOpTarget *) targets->data,
                      targets->len, state_dir, &err);
  sm_api_op_end ();
  if (!r) {
    sm_api_error_set (error, err);
    return -1;
  }
  if (report) {
    g_autoptr(json_object) doc = sm_validate_report_to_json (r, strict);

    *report = sm_api_json_text (doc, true);
  }
  return sm_validate_report_clean (r, strict) ? 1 : 0;
}
