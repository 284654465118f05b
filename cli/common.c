/* snapmig(1) — shared option parsing and printing. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ops.h"
#include "qmp.h"
#include "snapmig.h"
#include "report-json.h"

gboolean sm_cli_debug;
char *sm_cli_opt_connect;
char *sm_cli_opt_domain;
gboolean sm_cli_json;
static gboolean opt_version;
static const char *cli_command = "snapmig";
static SmCliOutput cli_output = SM_CLI_OUTPUT_DOCUMENT;
/* --json seen in argv before parsing: GOption restores the options it set
 * when it fails, and its usage error must still be JSON. */
static bool json_asked;

static const GOptionEntry json_entries[] = {
  { "json", 0, 0, G_OPTION_ARG_NONE, &sm_cli_json,
    "Machine-readable output: one JSON document, or JSON lines ending in "
    "a result event (see snapmig-json(7))", NULL },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

/* The commands that run for a while print JSON lines; the rest one
 * document (snapmig-json(7)). */
static const struct {
  const char *command;
  SmCliOutput output;
} outputs[] = {
  { "create", SM_CLI_OUTPUT_EVENTS },
  { "pivot", SM_CLI_OUTPUT_EVENTS },
  { "abort", SM_CLI_OUTPUT_EVENTS },
  { "rebase", SM_CLI_OUTPUT_EVENTS },
  { "migrate", SM_CLI_OUTPUT_EVENTS },
  { "migrate-recover", SM_CLI_OUTPUT_EVENTS },
  { "migrate-begin", SM_CLI_OUTPUT_EVENTS_STDERR },
  { "migrate-prepare", SM_CLI_OUTPUT_EVENTS_STDERR },
  { "migrate-perform", SM_CLI_OUTPUT_EVENTS_STDERR },
  { "migrate-finish", SM_CLI_OUTPUT_EVENTS_STDERR },
  { "migrate-confirm", SM_CLI_OUTPUT_EVENTS_STDERR },
  { "tunnel", SM_CLI_OUTPUT_NONE },
  { "relay", SM_CLI_OUTPUT_NONE },
};

void
sm_cli_begin (const char *command, int argc, char **argv)
{
  size_t i;

  cli_command = command;
  cli_output = SM_CLI_OUTPUT_DOCUMENT;
  for (i = 0; i < G_N_ELEMENTS (outputs); i++)
    if (strcmp (outputs[i].command, command) == 0)
      cli_output = outputs[i].output;
  if (cli_output == SM_CLI_OUTPUT_NONE)
    return;
  for (i = 1; i < (size_t) argc && strcmp (argv[i], "--") != 0; i++)
    if (strcmp (argv[i], "--json") == 0) {
      json_asked = true;
      sm_cli_json = TRUE;
    }
}

SmCliOutput
sm_cli_output (void)
{
  return cli_output;
}

void
sm_cli_set_output (SmCliOutput output)
{
  cli_output = output;
}

FILE *
sm_cli_events_stream (void)
{
  return cli_output == SM_CLI_OUTPUT_EVENTS_STDERR ? stderr : stdout;
}

static void
print_line (FILE *fp, json_object *obj)
{
  fprintf (fp, "%s\n", json_object_to_json_string_ext (
             obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  fflush (fp);
}

bool
sm_cli_print_document (json_object *doc)
{
  printf ("%s\n", json_object_to_json_string_ext (
            doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
            JSON_C_TO_STRING_NOSLASHESCAPE));
  if (fflush (stdout) != 0 || ferror (stdout)) {
    fprintf (stderr, "snapmig: error: cannot write to standard output\n");
    return false;
  }
  return true;
}

void
sm_cli_print_event (json_object *ev)
{
  sm_report_event_stamp (ev);
  print_line (sm_cli_events_stream (), ev);
}

int
sm_cli_result (json_object *fields)
{
  g_autoptr(json_object) r = sm_report_result_ok (fields);

  if (sm_cli_json)
    print_line (sm_cli_events_stream (), r);
  return SM_EXIT_OK;
}

/* With --json, ERROR (consumed) as the command's error document or its
 * failing result event. */
static void
print_json_error (json_object *error)
{
  g_autoptr(json_object) out = NULL;

  if (!(sm_cli_json || json_asked) || cli_output == SM_CLI_OUTPUT_NONE) {
    json_object_put (error);
    return;
  }
  if (cli_output == SM_CLI_OUTPUT_DOCUMENT) {
    out = sm_report_error_document (error);
    sm_cli_print_document (out);
    return;
  }
  out = sm_report_result_error (error);
  print_line (sm_cli_events_stream (), out);
}

int
sm_cli_fail_with (const char *context, const GError *err, json_object *error)
{
  sm_cli_gerror (context, err);
  print_json_error (error);
  return sm_error_exit_status (err);
}

int
sm_cli_fail (const char *context, const GError *err, const char *object)
{
  return sm_cli_fail_with (context, err, sm_report_error_json (err, object));
}

int
sm_cli_usage (const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fprintf (stderr, "snapmig: error: %s\n", msg);
  print_json_error (sm_report_error_json_new ("usage", msg, NULL));
  return SM_EXIT_USAGE;
}

const GOptionEntry sm_cli_common_entries[] = {
  { "debug", 0, 0, G_OPTION_ARG_NONE, &sm_cli_debug,
    "Log every QMP message and library decision to stderr, with timestamps "
    "(also SNAPMIG_DEBUG=1)", NULL },
  { "version", 0, 0, G_OPTION_ARG_NONE, &opt_version,
    "Print snapmig's version and exit", NULL },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

/* `snapmig: debug: 2026-12-01T05:53:01.123456Z DOMAIN: MESSAGE`: UTC with
 * microseconds, so that lines from two hosts (migrate's source and
 * destination) and QEMU's own log can be put side by side. */
static void
debug_to_stderr (const char *domain, const char *message, void *opaque)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *stamp = g_date_time_format (now, "%Y-%m-%dT%H:%M:%S");

  (void) opaque;
  fprintf (stderr, "snapmig: debug: %s.%06dZ %s: %s\n", stamp,
           g_date_time_get_microsecond (now), domain, message);
}

/* SNAPMIG_DEBUG set to anything but "", "0" or "no" is --debug. */
static bool
debug_from_env (void)
{
  const char *env = g_getenv ("SNAPMIG_DEBUG");

  return env && *env && strcmp (env, "0") != 0 &&
         g_ascii_strcasecmp (env, "no") != 0;
}

/* A file-name option given as "" (`--qmp "$SOCK"` with SOCK unset) names
 * nothing: a bad value, so a usage error, not a failure later on. */
static bool
filenames_ok (const char *command, const GOptionEntry *entries)
{
  for (; entries && entries->long_name; entries++) {
    bool empty = false;

    if (entries->arg == G_OPTION_ARG_FILENAME) {
      const char *v = *(char **) entries->arg_data;

      empty = v && !*v;
    } else if (entries->arg == G_OPTION_ARG_FILENAME_ARRAY) {
      char **v = *(char ***) entries->arg_data;

      for (; v && *v; v++)
        empty = empty || !**v;
    }
    if (empty) {
      sm_cli_usage ("%s: --%s: an empty file name (see 'snapmig %s --help')",
                    command, entries->long_name, command);
      return false;
    }
  }
  return true;
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
  if (strcmp (cli_command, command) != 0)
    sm_cli_begin (command, *argc, *argv);
  if (entries)
    g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_main_entries (ctx, sm_cli_common_entries, NULL);
  if (cli_output != SM_CLI_OUTPUT_NONE)
    g_option_context_add_main_entries (ctx, json_entries, NULL);
  if (!g_option_context_parse (ctx, argc, argv, &err)) {
    *exit_code = sm_cli_usage ("%s: %s (see 'snapmig %s --help')", command,
                               err->message, command);
    return false;
  }
  if (!filenames_ok (command, entries)) {
    *exit_code = SM_EXIT_USAGE;
    return false;
  }
  if (opt_version) {
    printf ("snapmig %s\n", SM_VERSION);
    *exit_code = SM_EXIT_OK;
    return false;
  }
  if (!sm_cli_debug && debug_from_env ())
    sm_cli_debug = TRUE;
  if (sm_cli_debug)
    sm_debug_set_handler (debug_to_stderr, NULL);
  return true;
}

/* `snapmig: LEVEL: MESSAGE` on stderr. */
static void G_GNUC_PRINTF (2, 0)
print_message (const char *level, const char *fmt, va_list ap)
{
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);

  fprintf (stderr, "snapmig: %s: %s\n", level, msg);
}

void
sm_cli_error (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  print_message ("error", fmt, ap);
  va_end (ap);
}

void
sm_cli_warning (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  print_message ("warning", fmt, ap);
  va_end (ap);
}

void
sm_cli_note (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  print_message ("note", fmt, ap);
  va_end (ap);
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

bool
sm_cli_parse_rate (const char *text, guint64 *rate)
{
  /* QEMU's "speed" arguments are JSON ints: int64. */
  const double limit = 9223372036854775807.0;
  char *end;
  double v;
  double mult = 1;

  errno = 0;
  v = g_ascii_strtod (text, &end);
  if (errno || end == text || v < 0)
    return false;
  switch (g_ascii_toupper (*end)) {
  case 'K': mult = 1024.0; end++; break;
  case 'M': mult = 1024.0 * 1024; end++; break;
  case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
  case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
  default: break;
  }
  if (mult > 1 && *end == 'i')
    end++;
  if (*end == 'B' || *end == 'b')
    end++;
  if (strcmp (end, "/s") == 0)
    end += 2;
  if (*end != '\0' || v * mult >= limit)
    return false;
  *rate = (guint64) (v * mult);
  return true;
}

bool
sm_cli_timeout_ok (const char *command, int timeout_s)
{
  if (timeout_s >= 0 && timeout_s <= SM_CLI_TIMEOUT_MAX_S)
    return true;
  sm_cli_error ("%s: --timeout must be a number of seconds from 0 to %d",
                command, SM_CLI_TIMEOUT_MAX_S);
  return false;
}

int
sm_cli_timeout_s (int timeout_s)
{
  g_autofree char *warning = NULL;
  int s;

  if (timeout_s > 0)
    return timeout_s;
  s = sm_op_default_timeout_s (&warning);
  if (warning)
    sm_cli_warning ("%s", warning);
  return s;
}

SmQmp *
sm_cli_connect (const char *address, int timeout_s, GError **error)
{
  return sm_op_connect (address, sm_cli_timeout_s (timeout_s), error);
}

bool
sm_cli_vm_target (const char *command, const char *qmp, SmOpTarget *t,
                  int *exit_code)
{
  g_autoptr(GError) err = NULL;

  t->address = qmp;
  t->uri = sm_cli_opt_connect;
  t->domain = sm_cli_opt_domain;
  if (sm_op_target_check (command, t, &err))
    return true;
  *exit_code = sm_cli_usage ("%s (see 'snapmig %s --help')", err->message,
                             command);
  return false;
}

int
sm_cli_need_qmp (const char *qmp, const char *command)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *label = NULL;
  SmOpTarget t = { .wait_timeout_ms = -1 };
  int rc;

  if (!sm_cli_vm_target (command, qmp, &t, &rc))
    return rc;
  if (sm_op_require_qmp (command, &t, &err))
    return SM_EXIT_OK;
  label = sm_op_target_label (&t);
  return sm_cli_fail (NULL, err, label);
}
