/* snapmig(1) — shared option parsing and printing. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>

#include "error.h"

gboolean sm_cli_debug;

const GOptionEntry sm_cli_common_entries[] = {
  { "debug", 0, 0, G_OPTION_ARG_NONE, &sm_cli_debug,
    "Log every QMP message and library decision to stderr", NULL },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static void
debug_to_stderr (const char *domain, const char *message, void *opaque)
{
  (void) opaque;
  fprintf (stderr, "snapmig: debug: %s: %s\n", domain, message);
}

bool
sm_cli_parse (const char *command, const char *params, const char *description,
              const GOptionEntry *entries, int *argc, char ***argv,
              int *exit_code)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *ctx_params = g_strdup_printf ("%s", params ? params : "");
  g_autoptr(GOptionContext) ctx = g_option_context_new (ctx_params);
  g_autofree char *prgname = g_strdup_printf ("snapmig %s", command);

  g_set_prgname (prgname);
  g_option_context_set_summary (ctx, description);
  if (entries)
    g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_main_entries (ctx, sm_cli_common_entries, NULL);
  if (!g_option_context_parse (ctx, argc, argv, &err)) {
    sm_cli_error ("%s: %s (see 'snapmig %s --help')", command, err->message,
                  command);
    *exit_code = SM_EXIT_USAGE;
    return false;
  }
  if (sm_cli_debug)
    sm_debug_set_handler (debug_to_stderr, NULL);
  return true;
}

void
sm_cli_error (const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fprintf (stderr, "snapmig: error: %s\n", msg);
}

void
sm_cli_warning (const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fprintf (stderr, "snapmig: warning: %s\n", msg);
}

void
sm_cli_gerror (const char *context, const GError *err)
{
  if (context)
    sm_cli_error ("%s: %s", context, err->message);
  else
    sm_cli_error ("%s", err->message);
}

char *
sm_cli_format_size (guint64 bytes)
{
  static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
  double v = bytes;
  size_t i;

  if (bytes < 1024)
    return g_strdup_printf ("%" G_GUINT64_FORMAT " B", bytes);
  v /= 1024;
  for (i = 0; v >= 1024 && i + 1 < G_N_ELEMENTS (units); i++)
    v /= 1024;
  return g_strdup_printf ("%.1f %s", v, units[i]);
}
