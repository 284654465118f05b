/* libsnapmig — which snapmig binary runs the helper processes (helper.h). */
#include "helper.h"

#include <dlfcn.h>
#include <unistd.h>
#include <glib.h>

/* SM_HELPER_FROM_LIBDIR: BINDIR/snapmig relative to LIBDIR (Makefile),
 * "../bin/snapmig" for every PREFIX of the default layout. */
#include "helper-path.h"

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

/* BINDIR/snapmig of the `make install` that installed the shared library
 * this code runs in, found from where the library was loaded; NULL when it
 * is not there (a program linked with the static archive). */
static char *
beside_library (void)
{
  Dl_info info;
  g_autofree char *dir = NULL;
  g_autofree char *path = NULL;

  if (!dladdr ((void *) sm_helper_path, &info) || !info.dli_fname ||
      !g_path_is_absolute (info.dli_fname))
    return NULL;
  dir = g_path_get_dirname (info.dli_fname);
  path = g_build_filename (dir, SM_HELPER_FROM_LIBDIR, NULL);
  if (access (path, X_OK) != 0)
    return NULL;
  return g_canonicalize_filename (path, NULL);
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
  path = beside_library ();
  return path ? path : g_strdup ("snapmig");
}
