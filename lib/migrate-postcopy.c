/* libsnapmig — post-copy: the destination's probe, the switch on request
 * (migrate-start-postcopy), and the recovery of a post-copy whose link
 * failed (migrate-recover) (lib/migrate.h). */
#include <string.h>

#include "migrate-private.h"

/* STUBS — being written (wp-core) */
bool
sm_mig_postcopy_supported (GError **error)
{
  (void) error;
  return true;
}

bool
sm_migrate_start_postcopy (SmVmState *st, const char *qmp_address,
                           int timeout_ms, GError **error)
{
  (void) st; (void) qmp_address; (void) timeout_ms;
  g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED, "not yet");
  return false;
}

SmMigCookie *
sm_migrate_load_outgoing (SmVmState *st, GError **error)
{
  (void) st;
  g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND, "not yet");
  return NULL;
}

bool
sm_migrate_recover_listen (SmMigCookie *c, const SmMigDestOptions *o,
                           GError **error)
{
  (void) c; (void) o;
  g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED, "not yet");
  return false;
}

bool
sm_migrate_recover_postcopy (SmQmp *qmp, SmVmState *st, SmMigCookie *c,
                             const SmMigOptions *o,
                             const char *const *dest_argv,
                             const char *const *dest_extra, GError **error)
{
  (void) qmp; (void) st; (void) c; (void) o; (void) dest_argv; (void) dest_extra;
  g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED, "not yet");
  return false;
}

SmMigCookie *
sm_migrate_recover_run (SmQmp *qmp, SmVmState *st, const SmMigOptions *o,
                        const char *const *dest_argv,
                        const char *const *dest_extra, GError **error)
{
  (void) qmp; (void) st; (void) o; (void) dest_argv; (void) dest_extra;
  g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED, "not yet");
  return NULL;
}
