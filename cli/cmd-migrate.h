/* The migrate commands' shared part (cli/cmd-migrate*.c only): their
 * options, the option entries they are made of, the printers of events and
 * results, the option checks and the destination command.  Defined in
 * cli/cmd-migrate-common.c.
 */
#ifndef SM_CLI_CMD_MIGRATE_H
#define SM_CLI_CMD_MIGRATE_H

#include <stdbool.h>
#include <stdio.h>
#include <glib.h>

#include "cli.h"
#include "migrate.h"
#include "progress.h"
#include "qmp.h"
#include "state.h"

/* The options; each command's entries below point at them. */
extern char *mig_opt_qmp;
extern char *mig_opt_state_dir;
extern char *mig_opt_dest_state_dir;
extern char *mig_opt_dest_domain;
extern char *mig_opt_dest_cmd;
extern char *mig_opt_dest_host;
extern char *mig_opt_source_host;
extern char *mig_opt_dest_run_dir;
extern char *mig_opt_dest_qemu;
extern char *mig_opt_port_range;
extern char *mig_opt_migrate_disks;
extern char *mig_opt_bandwidth;
extern char *mig_opt_copy_mode;
extern gboolean mig_opt_unix;
extern gboolean mig_opt_all;
extern gboolean mig_opt_inc;
extern gboolean mig_opt_flatten;
extern gboolean mig_opt_dry_run;
extern gboolean mig_opt_watch_stdin;
extern int mig_opt_timeout;
extern gboolean mig_opt_postcopy;
extern gboolean mig_opt_postcopy_after_precopy;
extern gboolean mig_opt_postcopy_fallback;
extern char *mig_opt_postcopy_bandwidth;
extern gboolean mig_opt_parallel;
extern gboolean mig_opt_tunnel;
extern gboolean mig_opt_tls;
extern char *mig_opt_tls_creds;
extern int mig_opt_link_timeout;
extern char *mig_opt_connect;
extern char *mig_opt_domain;
extern char *mig_opt_dest_connect;

/* An integer option not given (GOption leaves the variable as it is). */
#define UNSET G_MININT
extern int mig_opt_stall_timeout;
extern int mig_opt_recover_timeout;
extern int mig_opt_parallel_connections;

/* --port-range and --unix, with what they mean to the command. */
#define PORT_ENTRIES(port_help, unix_help) \
  { "port-range", 0, 0, G_OPTION_ARG_STRING, &mig_opt_port_range, port_help, \
    "MIN-MAX" }, \
  { "unix", 0, 0, G_OPTION_ARG_NONE, &mig_opt_unix, unix_help, NULL }
#define PORT_HELP "TCP ports to listen on (default 49152-49215)"

/* How the streams travel (issue 12): the same on both hosts (migrate passes
 * them to every destination phase; the cookie names the mode and prepare
 * refuses a mismatch). */
#define TRANSPORT_ENTRIES \
  { "tunnel", 0, 0, G_OPTION_ARG_NONE, &mig_opt_tunnel, \
    "Carry every stream (NBD, migration, recovery, the layers) through the " \
    "--dest-cmd connection: an ssh ControlMaster's unix-socket forwards, or " \
    "a 'snapmig relay' for any other command; no TCP port opens on the " \
    "destination (implies --unix)", NULL }, \
  { "tls", 0, 0, G_OPTION_ARG_NONE, &mig_opt_tls, \
    "Encrypt and verify every NBD and migration stream with x509 (needs " \
    "--tls-creds; not with --tunnel or --unix)", NULL }, \
  { "tls-creds", 0, 0, G_OPTION_ARG_FILENAME, &mig_opt_tls_creds, \
    "Directory of ca-cert.pem, server-cert.pem, server-key.pem, " \
    "client-cert.pem and client-key.pem (the same path on both hosts)", \
    "DIR" }, \
  { "link-timeout", 0, 0, G_OPTION_ARG_INT, &mig_opt_link_timeout, \
    "Wait up to SECONDS for a lost link to come back (NBD clients " \
    "reconnect, stopped copies resume where they were) before failing " \
    "(default 30)", "SECONDS" }

#define SOURCE_ENTRIES \
  { "qmp", 0, 0, G_OPTION_ARG_FILENAME, &mig_opt_qmp, \
    "The source VM's QMP socket", "SOCKET" }, \
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &mig_opt_state_dir, \
    "snapmig's state directory on this host", "DIR" }, \
  SM_CLI_TIMEOUT_ENTRY (mig_opt_timeout, \
                        "Give up when QEMU does not answer, or a copy makes " \
                        "no progress, for SECONDS (default 30 for a reply, " \
                        "60 for progress)")

#define PLAN_ENTRIES \
  { "copy-storage-all", 0, 0, G_OPTION_ARG_NONE, &mig_opt_all, \
    "Copy every layer, keeping each disk's chain (default)", NULL }, \
  { "copy-storage-inc", 0, 0, G_OPTION_ARG_NONE, &mig_opt_inc, \
    "Copy only each disk's top: its backing files are on storage both " \
    "hosts see at the same paths", NULL }, \
  { "flatten", 0, 0, G_OPTION_ARG_NONE, &mig_opt_flatten, \
    "Copy each disk into one image (libvirt's way)", NULL }, \
  { "migrate-disks", 0, 0, G_OPTION_ARG_STRING, &mig_opt_migrate_disks, \
    "Only these disks move (the others must be on storage the destination " \
    "sees)", "vda,vdb" }, \
  { "bandwidth", 0, 0, G_OPTION_ARG_STRING, &mig_opt_bandwidth, \
    "Limit the disks' and the RAM's copy to RATE per second", "RATE" }, \
  { "copy-mode", 0, 0, G_OPTION_ARG_STRING, &mig_opt_copy_mode, \
    "background (default) or write-blocking (always converges)", "MODE" }, \
  { "dest-host", 0, 0, G_OPTION_ARG_STRING, &mig_opt_dest_host, \
    "Address the destination listens on and the source connects to " \
    "(default 127.0.0.1)", "ADDR" }, \
  { "source-host", 0, 0, G_OPTION_ARG_STRING, &mig_opt_source_host, \
    "Address the source's layer server listens on (default: the local " \
    "address that routes to --dest-host)", "ADDR" }, \
  PORT_ENTRIES (PORT_HELP, "Unix sockets instead of TCP (both sides on one " \
                "file system)"), \
  TRANSPORT_ENTRIES, \
  { "postcopy", 0, 0, G_OPTION_ARG_NONE, &mig_opt_postcopy, \
    "Allow post-copy (postcopy-ram on both sides): the switch is made by " \
    "migrate-start-postcopy or --postcopy-after-precopy", NULL }, \
  { "postcopy-after-precopy", 0, 0, G_OPTION_ARG_NONE, \
    &mig_opt_postcopy_after_precopy, \
    "Switch to post-copy after the first full pass of pre-copy (implies " \
    "--postcopy)", NULL }, \
  { "postcopy-fallback", 0, 0, G_OPTION_ARG_NONE, &mig_opt_postcopy_fallback, \
    "Run pre-copy, and say so, when the destination cannot post-copy " \
    "(userfaultfd), instead of refusing", NULL }, \
  { "postcopy-bandwidth", 0, 0, G_OPTION_ARG_STRING, \
    &mig_opt_postcopy_bandwidth, \
    "Limit the RAM's post-copy to RATE per second (0 or unlimited: no " \
    "limit; default: --bandwidth's)", "RATE" }, \
  { "parallel", 0, 0, G_OPTION_ARG_NONE, &mig_opt_parallel, \
    "Migrate the RAM over several connections (multifd; 2 unless " \
    "--parallel-connections)", NULL }, \
  { "parallel-connections", 0, 0, G_OPTION_ARG_INT, \
    &mig_opt_parallel_connections, \
    "The number of multifd connections (1 or more; implies --parallel)", \
    "N" }

/* The watch of a running post-copy (migrate, migrate-recover; perform
 * ends when the post-copy begins). */
#define WATCH_ENTRIES \
  { "stall-timeout", 0, 0, G_OPTION_ARG_INT, &mig_opt_stall_timeout, \
    "Post-copy: no RAM progress for SECONDS means the link is dead, and " \
    "it is recovered (default 10)", "SECONDS" }, \
  { "recover-timeout", 0, 0, G_OPTION_ARG_INT, &mig_opt_recover_timeout, \
    "Post-copy: retry recovering a dead link for SECONDS, then give up " \
    "with both sides paused (default 600)", "SECONDS" }

/* Where the destination's phases run (migrate, migrate-recover). */
#define DEST_CMD_ENTRIES \
  { "dest-cmd", 0, 0, G_OPTION_ARG_STRING, &mig_opt_dest_cmd, \
    "Command that runs snapmig on the destination ('ssh hostb snapmig', " \
    "'ip netns exec B snapmig'; default: this snapmig)", "CMD" }, \
  { "dest-state-dir", 0, 0, G_OPTION_ARG_FILENAME, &mig_opt_dest_state_dir, \
    "snapmig's state directory on the destination", "DIR" }

#define DEST_ENTRIES \
  { "dest-domain", 0, 0, G_OPTION_ARG_FILENAME, &mig_opt_dest_domain, \
    "The destination storage domain (a directory)", "DIR" }, \
  { "dest-run-dir", 0, 0, G_OPTION_ARG_FILENAME, &mig_opt_dest_run_dir, \
    "Where the destination QEMU's sockets, pidfile and log go (empty or " \
    "new; default STATE/run/ID)", "DIR" }, \
  { "dest-qemu", 0, 0, G_OPTION_ARG_STRING, &mig_opt_dest_qemu, \
    "The destination QEMU's command line (default: the source's, with " \
    "paths mapped)", "'ARGS...'" }

/* migrate through libvirt's own migration (issue 14,
 * cli/cmd-migrate-libvirt.c). */
#define LIBVIRT_ENTRIES \
  { "connect", 0, 0, G_OPTION_ARG_STRING, &mig_opt_connect, \
    "The source libvirt (with --domain; instead of --qmp): libvirt's own " \
    "migration, the destination's disks pre-created by snapmig", "URI" }, \
  { "domain", 0, 0, G_OPTION_ARG_STRING, &mig_opt_domain, \
    "The running libvirt domain to migrate (name or UUID)", "NAME" }, \
  { "dest-connect", 0, 0, G_OPTION_ARG_STRING, &mig_opt_dest_connect, \
    "The destination libvirt (with --connect)", "URI" }

/* How the events are shown: the opaque of the options' event callback. */
typedef struct {
  SmProgress *progress;
  bool json;
  FILE *json_out;
  FILE *text_out;              /* NULL: stdout; the phase commands keep
                                  stdout for their cookie */
  char stage[16];              /* the RAM's stage last shown ("pre-copy",
                                  "post-copy"), "" before */
} Printer;

/* Seconds since START (g_get_monotonic_time). */
double mig_elapsed_s (gint64 start);

/* The options of every source command: O cleared, then --timeout,
 * --port-range, --unix, the post-copy watch and the events (to PR); false
 * (usage error printed) on a bad one. */
bool mig_base_options (const char *cmd, SmMigOptions *o, Printer *pr);
/* --qmp given; else false, usage error printed. */
bool mig_need_qmp (const char *cmd);
/* The source options (base, post-copy, plan); false (usage error printed)
 * on a bad one.  O->disks is the caller's to free. */
bool mig_source_options (const char *cmd, SmMigOptions *o, Printer *pr);
/* --state-dir, or the default state directory.  Caller frees. */
char *mig_state_dir (void);
/* Connects to the source VM and opens its state; prints the error unless
 * ERROR is given. */
bool mig_open_source (const char *cmd, SmQmp **qmp, SmVmState **st,
                      GError **error);
/* The migration cookie from stdin; NULL, error printed, on failure. */
/* The cookie on stdin; NULL with *RC the exit status (error printed). */
SmMigCookie *mig_read_cookie (const char *cmd, int *rc);
/* The cookie on stdout. */
void mig_write_cookie (const SmMigCookie *c);

/* One JSON document on OUT: {"event":EVENT,"error":{"code","message"}},
 * without "event" when EVENT is NULL. */
/* A destination phase's start: its options checked and O filled, the
 * cookie read from stdin; NULL (error printed, *CODE set) on failure.
 * STATE gets the state directory O names (caller frees). */
SmMigCookie *mig_dest_start (const char *cmd, SmMigDestOptions *o,
                             Printer *pr, char **state, int *code);
/* A destination phase's end: the cookie on stdout, with ERR in its
 * result.  Returns the exit code. */
int mig_dest_done (const char *cmd, const char *phase, SmMigCookie *c,
                   const GError *err);

/* migrate and migrate-recover: the result, or the failure, as text or
 * (--json) one JSON line on stdout. */
void mig_print_result (const SmMigCookie *c, double seconds);
/* migrate's and migrate-recover's failure (sm_cli_fail); returns the exit
 * status. */
int mig_print_failure (const char *cmd, const GError *err);
/* Their printer: events and the result on stdout, progress bars
 * (PROGRESS) unless --json. */
Printer mig_whole_printer (SmProgress *progress);
/* Connects to the source, or prints the failure as their result, as one
 * of PHASE, and sets *RC to its exit status. */
bool mig_whole_open (const char *cmd, const char *phase, SmQmp **qmp,
                     SmVmState **st, int *rc);
/* The command that runs snapmig on the destination into *DEST_ARGV, the
 * options every destination phase gets into EXTRA (NULL-ended); false
 * (usage error printed) on a bad --dest-cmd. */
bool mig_dest_command (const char *cmd, char ***dest_argv, GPtrArray *extra);

/* migrate --connect: checks the options that go with it, runs the
 * migration (lib/migrate-libvirt.h) and prints its result; O from
 * mig_source_options.  Returns the exit status. */
int mig_libvirt_run (const SmMigOptions *o);

#endif /* SM_CLI_CMD_MIGRATE_H */
