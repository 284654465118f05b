/* snapmig check-xml FILE... — validates <domainsnapshot> documents and
 * libvirt migration cookies against snapmig's embedded schemas. */
#include "cli.h"

#include <stdio.h>

#include "snapshot-xml.h"

int
sm_cmd_check_xml (int argc, char **argv)
{
  int exit_code = SM_EXIT_OK;
  int i;

  if (!sm_cli_parse ("check-xml", "FILE...",
                     "Validate each FILE, a <domainsnapshot> document (schema "
                     "and meaning\nchecks) or a libvirt migration cookie "
                     "<qemu-migration>, by its root\nelement.  Exit status: 0 "
                     "if every FILE is valid, 1 if one is not.",
                     NULL, &argc, &argv, &exit_code))
    return exit_code;
  if (argc < 2) {
    sm_cli_error ("check-xml: no FILE given (see 'snapmig check-xml --help')");
    return SM_EXIT_USAGE;
  }

  for (i = 1; i < argc; i++) {
    g_autoptr(GError) err = NULL;
    const char *kind = NULL;

    if (sm_xml_validate_file (argv[i], &kind, &err))
      printf ("%s: valid (%s)\n", argv[i], kind);
    else {
      /* The library's message begins with the file name. */
      sm_cli_gerror (NULL, err);
      exit_code = SM_EXIT_FAILURE;
    }
  }
  return exit_code;
}
