/* libsnapmig — error domain and debug logging. */
#include "error.h"

#include <stdarg.h>

G_DEFINE_QUARK (snapmig-error-quark, sm_error)

static SmDebugHandler debug_handler;
static void *debug_opaque;

void
sm_debug_set_handler (SmDebugHandler handler, void *opaque)
{
  debug_handler = handler;
  debug_opaque = opaque;
}

bool
sm_debug_enabled (void)
{
  return debug_handler != NULL;
}

void
sm_debug (const char *domain, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  if (!debug_handler)
    return;
  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  debug_handler (domain, msg, debug_opaque);
}
