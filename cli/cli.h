/* snapmig(1) — option parsing and printing only.  Every decision, QMP
 * conversation and file layout rule lives in lib/ (STYLE.md).
 */
#ifndef SM_CLI_H
#define SM_CLI_H

#include <stdbool.h>
#include <stdio.h>
#include <glib.h>
#include <json-c/json.h>

#include "ops.h"

/* Exit codes, documented in docs/snapmig.1 (EXIT STATUS).  A failure with
 * a GError exits with sm_error_exit_status (lib/error.h): sm_cli_fail. */
enum {
  SM_EXIT_OK = 0,
  SM_EXIT_FAILURE = 1,   /* the operation failed (or validate found problems) */
  SM_EXIT_USAGE = 2,     /* bad command line (validate: could not run) */
};

typedef struct {
  const char *name;
  const char *args;      /* synopsis after the command name */
  const char *summary;   /* one line for `snapmig help` */
  int (*run) (int argc, char **argv);  /* argv[0] is the command name */
} SmCliCommand;

/* Command entry points, one file each: cli/cmd-NAME.c. */
int sm_cmd_disks (int argc, char **argv);
int sm_cmd_check_xml (int argc, char **argv);
int sm_cmd_list (int argc, char **argv);       /* cmd-meta.c */
int sm_cmd_dumpxml (int argc, char **argv);    /* cmd-meta.c */
int sm_cmd_delete (int argc, char **argv);     /* cmd-meta.c */
int sm_cmd_current (int argc, char **argv);    /* cmd-meta.c */
int sm_cmd_rebase (int argc, char **argv);
int sm_cmd_validate (int argc, char **argv);
int sm_cmd_create (int argc, char **argv);     /* cmd-snapshot.c */
int sm_cmd_pivot (int argc, char **argv);      /* cmd-snapshot.c */
int sm_cmd_abort (int argc, char **argv);      /* cmd-snapshot.c */
int sm_cmd_status (int argc, char **argv);     /* cmd-snapshot.c */
int sm_cmd_recover (int argc, char **argv);    /* cmd-snapshot.c */
int sm_cmd_migrate (int argc, char **argv);    /* cmd-migrate.c */
/* cmd-migrate-phases.c */
int sm_cmd_migrate_begin (int argc, char **argv);
int sm_cmd_migrate_prepare (int argc, char **argv);
int sm_cmd_migrate_perform (int argc, char **argv);
int sm_cmd_migrate_finish (int argc, char **argv);
int sm_cmd_migrate_confirm (int argc, char **argv);
/* cmd-migrate-postcopy.c */
int sm_cmd_migrate_start_postcopy (int argc, char **argv);
int sm_cmd_migrate_recover (int argc, char **argv);
/* cmd-tunnel.c: migrate --tunnel's helpers */
int sm_cmd_tunnel (int argc, char **argv);
int sm_cmd_relay (int argc, char **argv);
/* cmd-worker.c: create's lower-layer copy worker */
int sm_cmd_copy_worker (int argc, char **argv);

/* Options every command takes: --debug, --version, --json (but the hidden
 * tunnel and relay). */
extern gboolean sm_cli_debug;
extern gboolean sm_cli_json;
extern const GOptionEntry sm_cli_common_entries[];

/* What a command prints with --json (snapmig-json(7)): one document on
 * stdout, or JSON lines (events ending in one result event) on stdout, or
 * on stderr for the migrate phases, whose stdout is the cookie. */
typedef enum {
  SM_CLI_OUTPUT_DOCUMENT,
  SM_CLI_OUTPUT_EVENTS,
  SM_CLI_OUTPUT_EVENTS_STDERR,
  SM_CLI_OUTPUT_NONE,            /* tunnel, relay: no --json */
} SmCliOutput;

/* Called by main before the command runs: remembers COMMAND and whether
 * ARGV asks for --json, so that even a usage error GOption reports before
 * parsing is a JSON one. */
void sm_cli_begin (const char *command, int argc, char **argv);
/* The current command's kind of output; the stream its events go to. */
SmCliOutput sm_cli_output (void);
FILE *sm_cli_events_stream (void);
/* migrate-recover --incoming prints a cookie: its events go to stderr. */
void sm_cli_set_output (SmCliOutput output);

/* A failure: `snapmig: error: CONTEXT: MESSAGE` on stderr and, with
 * --json, the error document on stdout (a document command) or the
 * failing result event (a long one).  OBJECT names what the command was
 * about (snapshot, socket, file), used when ERR carries no object.
 * Returns the exit status for ERR's code (sm_error_exit_status). */
int sm_cli_fail (const char *context, const GError *err, const char *object);
/* The same with the error object ERROR (consumed) built by the caller
 * (the migrate commands add its "phase"). */
int sm_cli_fail_with (const char *context, const GError *err,
                      json_object *error);
/* A usage error: the same with code "usage"; returns SM_EXIT_USAGE. */
int sm_cli_usage (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

/* Prints DOC on stdout, pretty (2 spaces), and flushes; false (error
 * printed) when stdout cannot be written. */
bool sm_cli_print_document (json_object *doc);
/* Prints event EV (stamped with its time) as one line on the events
 * stream. */
void sm_cli_print_event (json_object *ev);
/* The ok result event with FIELDS (consumed, may be NULL); returns
 * SM_EXIT_OK. */
int sm_cli_result (json_object *fields);

/* Parses a command's options; prints usage errors itself.  On success argv is
 * left with the positional arguments (argv[0] = command).  Returns false and
 * sets *exit_code when the caller should return it (error, or --help shown).
 */
bool sm_cli_parse (const char *command, const char *params,
                   const char *description, const GOptionEntry *entries,
                   int *argc, char ***argv, int *exit_code);

/* `snapmig: error: MESSAGE` on stderr. */
void sm_cli_error (const char *fmt, ...) G_GNUC_PRINTF (1, 2);
/* `snapmig: error: CONTEXT: GERROR-MESSAGE`; context may be NULL. */
void sm_cli_gerror (const char *context, const GError *err);
void sm_cli_warning (const char *fmt, ...) G_GNUC_PRINTF (1, 2);
/* "snapmig: note: ..." on stderr: something the user asked for was done
 * differently, by design (create --disk-only). */
void sm_cli_note (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

/* Parses a --bandwidth RATE in bytes per second: a number with an optional
 * suffix K, M, G or T (powers of 1024), optionally followed by "i", "B" and
 * "/s" ("512K", "64MiB", "1048576B", "8M/s").  The value must fit QEMU's
 * int64 speed.  Returns false, *RATE untouched, for anything else; printing
 * the usage error is the caller's. */
bool sm_cli_parse_rate (const char *text, guint64 *rate);

/* --timeout, the same for every command that talks to QEMU (docs/snapmig.1):
 * SECONDS bounds the connect, the greeting and each QMP reply; commands that
 * wait for progress (create --wait, pivot, abort, rebase) bound that wait
 * with it too.  Without it (0) each reply gets the default: 30 s, or the
 * environment's SNAPMIG_DEFAULT_TIMEOUT (seconds; for tests). */
#define SM_CLI_DEFAULT_TIMEOUT_S 30
#define SM_CLI_TIMEOUT_MAX_S (G_MAXINT / 1000)

/* The option entry; HELP says what else SECONDS bounds for the command. */
#define SM_CLI_TIMEOUT_ENTRY(var, help) \
  { "timeout", 0, 0, G_OPTION_ARG_INT, &(var), help, "SECONDS" }
#define SM_CLI_TIMEOUT_HELP \
  "Give up when QEMU does not answer within SECONDS (default 30)"

/* --timeout must be 0..SM_CLI_TIMEOUT_MAX_S; prints the usage error. */
bool sm_cli_timeout_ok (const char *command, int timeout_s);

/* The reply timeout in seconds for --timeout TIMEOUT_S (0: the default). */
int sm_cli_timeout_s (int timeout_s);

/* The one way a command connects to QEMU: sm_qmp_connect bounded by
 * sm_cli_timeout_s (TIMEOUT_S), and the same bound for every reply.  A
 * monitor that accepts no connection, or a QEMU that does not answer, is
 * SM_ERROR_TIMEOUT naming ADDRESS. */
SmQmp *sm_cli_connect (const char *address, int timeout_s, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The libvirt way to a VM (issue 14), defined once for every command that
 * takes it: --connect URI --domain NAME, in place of --qmp SOCKET. */
extern char *sm_cli_opt_connect;
extern char *sm_cli_opt_domain;
#define SM_CLI_LIBVIRT_ENTRIES \
  { "connect", 0, 0, G_OPTION_ARG_STRING, &sm_cli_opt_connect, \
    "Reach the VM through the libvirt at URI (qemu:///system, " \
    "qemu+ssh://HOST/system, ...) instead of --qmp; needs --domain", "URI" }, \
  { "domain", 0, 0, G_OPTION_ARG_STRING, &sm_cli_opt_domain, \
    "The libvirt domain (name or UUID) of --connect", "NAME" }

/* Sets T's way to the VM from --qmp QMP (NULL: not given) and --connect /
 * --domain (sm_op_target_check); false when they do not name one VM, the
 * usage error printed and *EXIT_CODE set. */
bool sm_cli_vm_target (const char *command, const char *qmp, SmOpTarget *t,
                       int *exit_code);

/* For a command with no libvirt way yet: --qmp QMP, or --connect/--domain
 * refused (sm_op_require_qmp).  SM_EXIT_OK, or the exit status of the
 * error printed. */
int sm_cli_need_qmp (const char *qmp, const char *command);

/* Formats a byte count for people: "1.0 GiB", "64.0 MiB", "512 B". */
char *sm_cli_format_size (guint64 bytes) G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_CLI_H */
