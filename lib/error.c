/* libsnapmig — error domain and debug logging. */
#include "error.h"

#include <stdarg.h>

typedef struct {
  char *object;
} SmErrorPrivate;

static void
sm_error_private_init (SmErrorPrivate *priv)
{
  priv->object = NULL;
}

static void
sm_error_private_copy (const SmErrorPrivate *src, SmErrorPrivate *dest)
{
  dest->object = g_strdup (src->object);
}

static void
sm_error_private_clear (SmErrorPrivate *priv)
{
  g_clear_pointer (&priv->object, g_free);
}

/* Named SmError so that the macro defines sm_error_quark and
 * sm_error_get_private. */
G_DEFINE_EXTENDED_ERROR (SmError, sm_error)

void
sm_error_set_object (GError *err, const char *object)
{
  SmErrorPrivate *priv;

  if (!err || err->domain != SM_ERROR)
    return;
  priv = sm_error_get_private (err);
  if (!priv)
    return;
  g_free (priv->object);
  priv->object = g_strdup (object);
}

const char *
sm_error_get_object (const GError *err)
{
  SmErrorPrivate *priv;

  if (!err || err->domain != SM_ERROR)
    return NULL;
  priv = sm_error_get_private (err);
  return priv ? priv->object : NULL;
}

void
sm_error_set_with_object (GError **error, SmErrorCode code, const char *object,
                          const char *fmt, ...)
{
  va_list ap;
  GError *err;

  if (!error)
    return;
  va_start (ap, fmt);
  err = g_error_new_valist (SM_ERROR, code, fmt, ap);
  va_end (ap);
  sm_error_set_object (err, object);
  g_propagate_error (error, err);
}

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

/* The one table from error code to exit status (docs/snapmig.1, EXIT
 * STATUS; docs/snapmig-json.7).  Codes not listed exit 1. */
static const int exit_statuses[SM_ERROR_LAST] = {
  [SM_ERROR_INVALID] = SM_EXIT_STATUS_USAGE,
  [SM_ERROR_XML] = SM_EXIT_STATUS_USAGE,
  [SM_ERROR_NOT_FOUND] = SM_EXIT_STATUS_NOT_FOUND,
  [SM_ERROR_BUSY] = SM_EXIT_STATUS_BUSY,
  [SM_ERROR_IN_USE] = SM_EXIT_STATUS_BUSY,
  [SM_ERROR_TIMEOUT] = SM_EXIT_STATUS_TIMEOUT,
  [SM_ERROR_DISCONNECTED] = SM_EXIT_STATUS_DISCONNECTED,
  [SM_ERROR_QMP] = SM_EXIT_STATUS_QEMU,
  [SM_ERROR_QMP_PROTOCOL] = SM_EXIT_STATUS_QEMU,
  [SM_ERROR_UNSUPPORTED] = SM_EXIT_STATUS_QEMU,
  [SM_ERROR_NO_SPACE] = SM_EXIT_STATUS_NO_SPACE,
  [SM_ERROR_INTERRUPTED] = SM_EXIT_STATUS_INTERRUPTED,
};

int
sm_error_exit_status (const GError *err)
{
  if (!err)
    return SM_EXIT_STATUS_OK;
  return sm_error_exit_status_for_name (sm_error_code_name (err));
}

int
sm_error_exit_status_for_name (const char *name)
{
  int code;

  if (g_strcmp0 (name, "usage") == 0)
    return SM_EXIT_STATUS_USAGE;
  code = sm_error_code_from_name (name);
  return exit_statuses[code] ? exit_statuses[code] : SM_EXIT_STATUS_FAILED;
}
