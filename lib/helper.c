/* libsnapmig — which snapmig binary runs the helper processes (helper.h). */
#include "helper.h"

#include <glib.h>

#include "helper-path.h"   /* SM_HELPER_PATH: BINDIR/snapmig (Makefile) */

static GMutex lock;
static char *helper;

void
sm_helper_set_path (const char *path)
{
  g_mutex_lock (&lock);
  g_free (helper);
  helper = path && *path ? g_strdup (path) : NULL;
  g_mutex_unlock (&lock);
}

char *
sm_helper_path (void)
{
  const char *env = g_getenv ("SNAPMIG_HELPER");
  char *path;

  g_mutex_lock (&lock);
  path = g_strdup (helper);
  g_mutex_unlock (&lock);
  if (path)
    return path;
  if (env && *env)
    return g_strdup (env);
  return g_strdup (SM_HELPER_PATH);
}
