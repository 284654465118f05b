/* smq — a tiny QMP client for the shell tests, built on lib/qmp.
 *
 *   smq SOCKET COMMAND [JSON-ARGS]   prints the reply's return value as JSON
 *   smq --hmp [--log FILE] SOCKET 'HMP COMMAND LINE'
 *                                    prints the HMP output
 *
 * SOCKET is a unix socket path or host:port.  Exit status: 0 on success, 1
 * when QEMU answers with an error (`smq: error: COMMAND: DESC` on stderr) or
 * a qemu-io command run through --hmp reports a failure, 2 on bad usage.
 *
 * QEMU 7.2 prints HMP qemu-io's results on its stdout, not in the HMP reply
 * (see sm_test_hmp), so --hmp also reads the lines QEMU's log gained: FILE,
 * or by default NAME.log next to a socket NAME.qmp (the convention of
 * tests/integration/lib.sh's start_vm and the C harness).
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "qmp.h"

#define CONNECT_TIMEOUT_MS 10000

static int
usage (void)
{
  fprintf (stderr, "usage: smq SOCKET COMMAND [JSON-ARGS]\n"
           "       smq --hmp [--log FILE] SOCKET 'COMMAND LINE'\n");
  return 2;
}

static int
run_hmp (const char *address, const char *log_opt, const char *command_line)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmQmp) qmp = sm_qmp_connect (address, CONNECT_TIMEOUT_MS, &err);
  g_autofree char *log = log_opt ? g_strdup (log_opt)
    : sm_test_log_for_socket (address);
  g_autofree char *out = NULL;
  bool ok;

  if (!qmp) {
    fprintf (stderr, "smq: error: %s\n", err->message);
    return 1;
  }
  ok = sm_test_hmp (qmp, log, command_line, &out);
  fputs (out, stdout);
  if (!ok) {
    fprintf (stderr, "smq: error: HMP '%s' failed\n", command_line);
    return 1;
  }
  return 0;
}

static int
run_qmp (const char *address, const char *command, const char *json_args)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(json_object) args = NULL;
  g_autoptr(json_object) ret = NULL;

  if (json_args) {
    args = json_tokener_parse (json_args);
    if (!args || !json_object_is_type (args, json_type_object)) {
      fprintf (stderr, "smq: error: arguments are not a JSON object: %s\n",
               json_args);
      return 2;
    }
  }
  qmp = sm_qmp_connect (address, CONNECT_TIMEOUT_MS, &err);
  if (!qmp) {
    fprintf (stderr, "smq: error: %s\n", err->message);
    return 1;
  }
  ret = sm_qmp_execute (qmp, command, g_steal_pointer (&args), &err);
  if (!ret) {
    fprintf (stderr, "smq: error: %s\n", err->message);
    return 1;
  }
  printf ("%s\n", json_object_to_json_string_ext (ret,
                                                  JSON_C_TO_STRING_PLAIN |
                                                  JSON_C_TO_STRING_NOSLASHESCAPE));
  return 0;
}

int
main (int argc, char **argv)
{
  const char *log = NULL;
  int i = 1;

  if (argc > 1 && strcmp (argv[1], "--hmp") == 0) {
    i = 2;
    if (argc > 3 && strcmp (argv[2], "--log") == 0) {
      log = argv[3];
      i = 4;
    }
    if (argc - i != 2)
      return usage ();
    return run_hmp (argv[i], log, argv[i + 1]);
  }
  if (argc != 3 && argc != 4)
    return usage ();
  return run_qmp (argv[1], argv[2], argc == 4 ? argv[3] : NULL);
}
