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

/* The JSON contract's error codes (docs/snapmig.1, JSON OUTPUT). */
static const char *const code_names[SM_ERROR_LAST] = {
  [SM_ERROR_FAILED] = "failed",
  [SM_ERROR_INVALID] = "invalid-input",
  [SM_ERROR_XML] = "invalid-xml",
  [SM_ERROR_IO] = "io",
  [SM_ERROR_NOT_FOUND] = "not-found",
  [SM_ERROR_EXISTS] = "exists",
  [SM_ERROR_IMAGE] = "image",
  [SM_ERROR_UNSAFE] = "unsafe",
  [SM_ERROR_QMP] = "qemu-error",
  [SM_ERROR_QMP_PROTOCOL] = "qemu-protocol",
  [SM_ERROR_DISCONNECTED] = "disconnected",
  [SM_ERROR_TIMEOUT] = "timeout",
  [SM_ERROR_UNSUPPORTED] = "unsupported",
  [SM_ERROR_BUSY] = "busy",
  [SM_ERROR_INTERRUPTED] = "interrupted",
  [SM_ERROR_IN_USE] = "in-use",
  [SM_ERROR_NO_SPACE] = "no-space",
};

const char *
sm_error_code_name (const GError *err)
{
  if (!err || err->domain != SM_ERROR || err->code < 0 ||
      err->code >= SM_ERROR_LAST || !code_names[err->code])
    return "failed";
  return code_names[err->code];
}

int
sm_error_code_from_name (const char *name)
{
  for (int i = 0; name && i < SM_ERROR_LAST; i++)
    if (code_names[i] && g_strcmp0 (code_names[i], name) == 0)
      return i;
  return SM_ERROR_FAILED;
}
