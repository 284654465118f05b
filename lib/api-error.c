/* libsnapmig's public API: errors (include/snapmig.h). */
#include "api-private.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* snapmig_code is SmErrorCode + 1 (0 is SNAPMIG_OK), in the same order. */
G_STATIC_ASSERT (SNAPMIG_ERR_LAST == SM_ERROR_LAST + 1);
G_STATIC_ASSERT (SNAPMIG_ERR_FAILED == SM_ERROR_FAILED + 1);
G_STATIC_ASSERT (SNAPMIG_ERR_QEMU_ERROR == SM_ERROR_QMP + 1);
G_STATIC_ASSERT (SNAPMIG_ERR_NO_SPACE == SM_ERROR_NO_SPACE + 1);

struct snapmig_error {
  snapmig_code code;
  char *message;
  char *object;
};

void
sm_api_error_set (snapmig_error **error, GError *err)
{
  snapmig_error *e;

  if (!error) {
    g_error_free (err);
    return;
  }
  e = calloc (1, sizeof *e);
  if (!e) {
    g_error_free (err);
    return;
  }
  e->code = err->domain == SM_ERROR && err->code >= 0 &&
            err->code < SM_ERROR_LAST ? (snapmig_code) (err->code + 1)
                                      : SNAPMIG_ERR_FAILED;
  e->message = strdup (err->message);
  e->object = sm_error_get_object (err) ? strdup (sm_error_get_object (err))
                                        : NULL;
  g_error_free (err);
  *error = e;
}

void
sm_api_error_invalid (snapmig_error **error, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  sm_api_error_set (error, g_error_new_literal (SM_ERROR, SM_ERROR_INVALID,
                                                msg));
}

snapmig_code
snapmig_error_code (const snapmig_error *error)
{
  return error ? error->code : SNAPMIG_OK;
}

const char *
snapmig_code_name (snapmig_code code)
{
  GError e = { SM_ERROR, (int) code - 1, NULL };

  if (code <= SNAPMIG_OK || code >= SNAPMIG_ERR_LAST)
    return NULL;
  return sm_error_code_name (&e);
}

const char *
snapmig_error_code_name (const snapmig_error *error)
{
  return error ? snapmig_code_name (error->code) : NULL;
}

const char *
snapmig_error_message (const snapmig_error *error)
{
  return error ? error->message : NULL;
}

const char *
snapmig_error_object (const snapmig_error *error)
{
  return error ? error->object : NULL;
}

void
snapmig_error_free (snapmig_error *error)
{
  if (!error)
    return;
  free (error->message);
  free (error->object);
  free (error);
}
