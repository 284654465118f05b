/* snapmig check-xml FILE... — validates <domainsnapshot> documents and
 * libvirt migration cookies against snapmig's embedded schemas. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "migrate-cookie.h"
#include "qmp.h"          /* json_object's g_autoptr cleanup */
#include "report-json.h"
#include "snapshot-xml.h"

/* A valid cookie's meaning, as a migration phase reading it checks it
 * (absolute paths, export names of copied layers, URIs, ...). */
static bool
check_cookie_meaning (const char *path, GError **error)
{
  g_autofree char *text = NULL;
  g_autoptr(SmMigCookie) cookie = NULL;
  gsize len;

  if (!g_file_get_contents (path, &text, &len, error))
    return false;
  cookie = sm_mig_cookie_parse (text, (gssize) len, error);
  return cookie != NULL;
}

int
sm_cmd_check_xml (int argc, char **argv)
{
  g_autoptr(json_object) files = NULL;
  int exit_code = SM_EXIT_OK;
  int i;

  if (!sm_cli_parse ("check-xml", "FILE...",
                     "Validate each FILE, a <domainsnapshot> document (schema "
                     "and meaning\nchecks) or a libvirt migration cookie "
                     "<qemu-migration> (schema and\nmeaning checks of "
                     "snapmig's part), by its root element.  Exit status: 0 "
                     "if every FILE is valid, 1 if one is not.",
                     NULL, &argc, &argv, &exit_code))
    return exit_code;
  if (argc < 2)
    return sm_cli_usage ("check-xml: no FILE given (see 'snapmig check-xml "
                         "--help')");

  files = json_object_new_array ();
  for (i = 1; i < argc; i++) {
    g_autoptr(GError) err = NULL;
    const char *kind = NULL;

    if (!sm_xml_validate_file (argv[i], &kind, &err)) {
      /* The library's message begins with the file name. */
      sm_cli_gerror (NULL, err);
      exit_code = SM_EXIT_FAILURE;
    }
    else if (strcmp (kind, "qemu-migration") == 0 &&
             !check_cookie_meaning (argv[i], &err)) {
      sm_cli_gerror (argv[i], err);
      exit_code = SM_EXIT_FAILURE;
    }
    else if (!sm_cli_json)
      printf ("%s: valid (%s)\n", argv[i], kind);
    json_object_array_add (files, sm_report_checked_file_json (argv[i], kind,
                                                               err));
  }
  if (sm_cli_json) {
    g_autoptr(json_object) doc = sm_report_check_xml_json (
      g_steal_pointer (&files));

    if (!sm_cli_print_document (doc))
      return SM_EXIT_FAILURE;
  }
  return exit_code;
}
