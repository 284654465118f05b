/* libsnapmig — cross-host migration of a running VM with its local disks
 * (`snapmig migrate`), libvirt's NBD storage migration on the sizing and
 * pre-creation code of the local move.
 *
 * Five phases, each a command of its own, exchange a cookie
 * (lib/migrate-cookie.h):
 *
 *   begin    (source)       the VM view; CHAIN: one snapshot transaction
 *                            gives every migrated disk a new small top, and
 *                            the source QEMU's NBD server exports the now
 *                            read-only lower layers' bytes (raw, read-only)
 *   prepare  (destination)  room checked, every layer pre-created in the
 *                            domain, the lower layers pulled from the
 *                            source's export (flushed, backing names made
 *                            relative), the destination QEMU started from
 *                            the source's command line (-S -incoming defer),
 *                            an NBD server with one writable export per disk,
 *                            migrate-incoming
 *   perform  (source)       one NBD client node and one blockdev-mirror per
 *                            disk (sync=top, or full with --flatten), every
 *                            mirror READY, then migrate with
 *                            pause-before-switchover; at pre-switchover each
 *                            mirror is completed without pivoting (non-force
 *                            block-job-cancel), its NBD node deleted, and the
 *                            switchover continues
 *   finish   (destination)  waits for the incoming migration, stops the NBD
 *                            server, resumes the guest (if it ran)
 *   confirm  (source)       success: the source QEMU quits and the
 *                            snapshot's new top is folded back into the old
 *                            one offline (the source keeps its disks as they
 *                            were, with every write); failure: everything
 *                            undone and the guest resumed — never once the
 *                            destination may have run it
 *
 * `sm_migrate_run` runs them all, the destination's phases through a
 * command (`--dest-cmd`: this snapmig, `ssh host snapmig`, `ip netns exec B
 * snapmig`) whose stdin/stdout carry the cookies.  Any failure ends with
 * the source running on its own chain with every write, the destination's
 * QEMU and NBD server stopped and every file prepare created removed.
 *
 * Journals: the source journals in its VM's journal directory
 * (STATE/vms/KEY/journal/ID.journal, op "migrate-out", the new tops it
 * created in ID.created); the destination in STATE/incoming/ID.journal
 * (op "migrate-in", its created files in ID.created, the QEMU it started
 * with PID and start time).  `snapmig recover` rolls either back, or
 * finishes what is past the point of no return (sm_migrate_recover_*).
 *
 * Endpoints are "tcp:HOST:PORT" or "unix:PATH" (lib/migrate-cookie.h), so
 * that a tunnel can stand in for either side later.
 */
#ifndef SM_MIGRATE_H
#define SM_MIGRATE_H

#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <glib.h>
#include <json-c/json.h>

#include "error.h"
#include "migrate-cookie.h"
#include "qmp.h"
#include "state.h"

/* Progress and phase events for the caller (the CLI prints them).  EVENT is
 * a JSON object of the one JSON contract ({"event": "phase", "phase":
 * "prepare"}, {"event": "progress", "what": "disk"|"layer"|"ram", "disk":
 * NAME, "done": N, "total": N}, {"event": "message", "message": TEXT}),
 * borrowed for the call. */
typedef void (*SmMigEventFn) (json_object *event, void *opaque);

/* libvirt's default migration port range. */
#define SM_MIG_PORT_MIN 49152
#define SM_MIG_PORT_MAX 49215

typedef struct {
  SmMigStorage storage;
  char **disks;                /* --migrate-disks; NULL: every writable
                                  disk with a medium */
  uint64_t bandwidth;          /* bytes/s for disks and RAM, 0: none */
  const char *copy_mode;       /* NULL, "background", "write-blocking" */
  const char *dest_host;       /* where the destination listens */
  const char *source_host;     /* where the source's layer server listens
                                  (NULL: the local address that routes to
                                  dest_host) */
  bool unix_sockets;           /* unix sockets instead of TCP */
  int port_min, port_max;      /* TCP port range (0: the default) */
  int timeout_ms;              /* a wait without progress this long fails
                                  (0: 60 s); also bounds each QMP reply */
  int converge_ms;             /* > 0 (--timeout given): the pre-copy must
                                  reach the switchover within this from the
                                  start of the RAM phase, else it failed to
                                  converge (SM_ERROR_TIMEOUT, rolled back) */
  /* post-copy (lib/migrate-postcopy.c) */
  bool postcopy;               /* --postcopy: postcopy-ram on both sides;
                                  the switch is made by
                                  migrate-start-postcopy or by
                                  postcopy_after_precopy */
  bool postcopy_after_precopy; /* switch once the first full pass of
                                  pre-copy is done (implies postcopy) */
  bool postcopy_fallback;      /* a destination that cannot post-copy
                                  (userfaultfd) runs pre-copy, said in a
                                  message; without it such a destination is
                                  refused before anything moves */
  int64_t postcopy_bandwidth;  /* max-postcopy-bandwidth in bytes/s, always
                                  set: 0 unlimited, -1 bandwidth's value */
  int stall_timeout_ms;        /* post-copy: no RAM progress this long is a
                                  dead link, paused and recovered (0: 10 s) */
  int recover_timeout_ms;      /* post-copy: recovery retries (with
                                  backoff) this long, then gives up leaving
                                  both sides postcopy-paused (0: 600 s) */
  int parallel;                /* multifd channels (--parallel-connections),
                                  0: one stream; refused with post-copy */
  /* transport (issue 12) */
  bool tunnel;                 /* --tunnel: unix sockets at both ends, every
                                  stream through the --dest-cmd connection
                                  (lib/tunnel.h); implies unix_sockets */
  bool tls;                    /* --tls: x509 on every NBD and migration
                                  stream (direct mode only) */
  const char *tls_creds;       /* --tls-creds DIR (absolute): ca-cert.pem,
                                  server-cert.pem, server-key.pem,
                                  client-cert.pem, client-key.pem */
  int link_timeout_ms;         /* a lost link may come back within this
                                  (NBD reconnect-delay, mirrors stopped on
                                  the target error resumed, the tunnel
                                  restarted); then the copy fails
                                  (0: SM_MIG_LINK_TIMEOUT_MS) */
  struct SmTunnel *tunnel_handle; /* sm_migrate_run's open tunnel, NULL
                                  otherwise: the source maps the
                                  destination's endpoints through it */
  /* sm_migrate_run's: waits (at most TIMEOUT_MS) until the destination's
   * finish, started before perform, watches its QEMU, so that the guest's
   * pause at switchover does not include that phase's start (a new ssh
   * connection: 0.3-0.7 s).  NULL: none. */
  void (*dest_ready) (void *ready_opaque, int timeout_ms);
  void *ready_opaque;
  SmMigEventFn event;
  void *opaque;
} SmMigOptions;

typedef struct {
  const char *state_dir;       /* the destination's state directory */
  const char *domain;          /* --dest-domain */
  const char *run_dir;         /* --dest-run-dir (NULL: STATE/run/ID) */
  const char *qemu_args;       /* --dest-qemu, or NULL: the source's */
  bool allow_larger;           /* a block device larger than the disk */
  bool unix_sockets;           /* NBD server and incoming migration on unix
                                  sockets in the run directory */
  bool tunnel;                 /* --tunnel: unix sockets; the source's
                                  layer server is reached at
                                  RUN/tunnel-layers.sock (the tunnel's
                                  reverse forward) */
  bool tls;                    /* --tls */
  const char *tls_creds;       /* --tls-creds DIR (absolute) */
  int link_timeout_ms;         /* as SmMigOptions' (0: default) */
  int watch_fd;                /* finish: its end of file (the source's
                                  snapmig is gone) before the migration
                                  completed fails the finish; -1: none */
  int timeout_ms;
  int port_min, port_max;
  SmMigEventFn event;
  void *opaque;
} SmMigDestOptions;

/* How long a copy waits for a lost link by default (--link-timeout). */
#define SM_MIG_LINK_TIMEOUT_MS 30000

/* Default bounds of the post-copy's link watch and recovery. */
#define SM_MIG_POSTCOPY_STALL_MS 10000
#define SM_MIG_RECOVER_TIMEOUT_MS 600000

/* ---- source ------------------------------------------------------------ */

/* Plans the migration of the VM behind QMP: the cookie the destination
 * prepares from (disks, layers, roles, the source's command line).  With
 * DRY_RUN nothing changes; otherwise (CHAIN) the new tops are created and
 * the snapshot transaction is taken, and the lower layers exported.
 * Refuses before changing anything: a disk named twice or unknown, a disk
 * with a block job, a migrated disk without file, an unsupported format,
 * a QEMU without blockdev-mirror/nbd/pause-before-switchover.  Caller
 * frees. */
SmMigCookie *sm_migrate_begin (SmQmp *qmp, SmVmState *st,
                               const SmMigOptions *o, bool dry_run,
                               GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Mirrors every migrated disk into the destination's exports, migrates
 * the VM state and completes the mirrors at pre-switchover.  Fills
 * COOKIE's disk_bytes, ram_bytes and stopped_at. */
bool sm_migrate_perform (SmQmp *qmp, SmVmState *st, SmMigCookie *cookie,
                         const SmMigOptions *o, GError **error);

/* SUCCESS: the source QEMU quits, the new tops are folded back offline.
 * Otherwise the migration is cancelled, mirrors and NBD nodes and the layer
 * server go, the new tops are folded back online, and the guest resumes
 * if it ran before — refused (SM_ERROR_FAILED, the guest left paused) when
 * the migration had completed and COOKIE does not say the destination
 * never ran it.  Removes the journal when done. */
bool sm_migrate_confirm (SmQmp *qmp, SmVmState *st, SmMigCookie *cookie,
                         bool success, GError **error);

/* ---- destination -------------------------------------------------------- */

/* Prepares COOKIE (from begin) on this host and fills its destination
 * part.  On failure removes what it made (QEMU stopped, files removed).
 * DRY_RUN: only plans (cookie filled with the paths it would use). */
bool sm_migrate_prepare (SmMigCookie *cookie, const SmMigDestOptions *o,
                         bool dry_run, GError **error);

/* Waits for the incoming migration to complete, stops the NBD server and
 * resumes the guest; sets COOKIE's dest_ran.  On failure before the guest
 * ran, the destination is cleaned up as sm_migrate_cancel_incoming. */
bool sm_migrate_finish (SmMigCookie *cookie, const SmMigDestOptions *o,
                        GError **error);

/* Stops the destination QEMU of COOKIE's migration (refused once its guest
 * runs) and removes every file prepare created and its run directory. */
bool sm_migrate_cancel_incoming (SmMigCookie *cookie,
                                 const SmMigDestOptions *o, GError **error);

/* ---- the whole migration -------------------------------------------- */

/* Runs begin, prepare, perform, finish and confirm; DEST_ARGV is the
 * command that runs snapmig on the destination (the phase and its options
 * are appended), DEST_EXTRA the options given to every destination phase
 * (--state-dir, --dest-domain, ...).  Returns the final cookie (caller
 * frees), or NULL with an error whose message names the failed phase; the
 * migration has then been rolled back on both sides. */
SmMigCookie *sm_migrate_run (SmQmp *qmp, SmVmState *st, const SmMigOptions *o,
                             const char *const *dest_argv,
                             const char *const *dest_extra, bool dry_run,
                             char **dest_plan, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* ---- post-copy (lib/migrate-postcopy.c) ------------------------------- */

/* Whether a QEMU run by this user on this host can be a post-copy
 * destination: userfaultfd (root, or vm.unprivileged_userfaultfd=1).
 * False with SM_ERROR_UNSUPPORTED saying why and what to do. */
bool sm_mig_postcopy_supported (GError **error);

/* migrate-start-postcopy: switches the running migration of the VM at
 * QMP_ADDRESS (state ST) to post-copy.  When another snapmig holds the VM
 * (migrate, migrate-perform) the request goes to it through the state
 * directory (STATE/vms/KEY/journal/ID.start-postcopy) and its answer is
 * awaited for at most TIMEOUT_MS; otherwise QEMU is asked directly.
 * SM_ERROR_INVALID when the migration was not started with --postcopy,
 * SM_ERROR_NOT_FOUND when no migration runs. */
bool sm_migrate_start_postcopy (SmVmState *st, const char *qmp_address,
                                int timeout_ms, GError **error);

/* The outgoing migration of ST as perform last saved it (the cookie after
 * prepare, STATE/vms/KEY/journal/ID.cookie): what migrate-recover works
 * from.  SM_ERROR_NOT_FOUND when there is none.  Caller frees. */
SmMigCookie *sm_migrate_load_outgoing (SmVmState *st, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The destination's part of a post-copy recovery (migrate-recover
 * --incoming): the incoming migration is paused if it has not paused by
 * itself (migrate-pause), then migrate-recover listens on a new endpoint
 * (TCP: a free port of the range on the cookie's dest_host; unix: a new
 * socket in the run directory), written to COOKIE's migrate_uri. */
bool sm_migrate_recover_listen (SmMigCookie *cookie, const SmMigDestOptions *o,
                                GError **error);

/* The destination's recovery agent (migrate-recover --incoming --hold),
 * which migrate starts with the destination's finish when post-copy is
 * enabled: it opens the destination QEMU's second monitor of snapmig's at
 * once, with out-of-band execution (a vCPU waiting in userfaultfd for a page
 * may hold QEMU's global lock, and then no in-band command, nor a new
 * connection's handshake, is answered until the link is back), prints
 * "ready", then for each line "recover" read from IN_FD does as
 * sm_migrate_recover_listen with exec-oob and prints "uri URI" or "error
 * CODE MESSAGE" to OUT.  Returns at end of file on IN_FD. */
bool sm_migrate_recover_agent (SmMigCookie *cookie, const SmMigDestOptions *o,
                               int in_fd, FILE *out, GError **error);

/* The source's post-copy recovery (migrate-recover, and what migrate does
 * by itself): the source is paused if it has not paused by itself, the
 * destination listens again (DEST_ARGV migrate-recover --incoming
 * DEST_EXTRA...), and the source resumes the stream (migrate resume=true)
 * until it runs post-copy again; retried with backoff (1, 2, 4.. 10 s)
 * for O's recover_timeout_ms.  Counts COOKIE's recoveries. */
bool sm_migrate_recover_postcopy (SmQmp *qmp, SmVmState *st, SmMigCookie *cookie,
                                  const SmMigOptions *o,
                                  const char *const *dest_argv,
                                  const char *const *dest_extra,
                                  GError **error);

/* migrate-recover by hand (after a killed snapmig migrate, or one that
 * gave up recovering): the post-copy of ST's outgoing migration (cookie
 * from sm_migrate_load_outgoing) is recovered as above, awaited until it
 * completes, finished on the destination (DEST_ARGV migrate-finish) and
 * confirmed here (the source QEMU quits, the new tops are folded back).
 * Returns the final cookie (caller frees). */
SmMigCookie *sm_migrate_recover_run (SmQmp *qmp, SmVmState *st,
                                     const SmMigOptions *o,
                                     const char *const *dest_argv,
                                     const char *const *dest_extra,
                                     GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* ---- recover ------------------------------------------------------------ */

/* recover's part for an interrupted outgoing migration: the journal at
 * PATH with its RECORDS (QMP NULL when QEMU is gone).  Returns what was
 * done (caller frees) or NULL with ERROR. */
char *sm_migrate_recover_source (SmQmp *qmp, SmVmState *st, const char *path,
                                 json_object *records, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* For recover --dest-never-ran: the administrator says that the
 * destination never ran the guest (its `recover --incoming` rolled back),
 * so a source paused after a completed migration may resume. */
void sm_migrate_recover_set_dest_never_ran (bool never_ran);
/* For recover --dest-runs: the destination runs the guest after a
 * completed migration, so the source QEMU quits and its snapshot is folded
 * back, as confirm would have done. */
void sm_migrate_recover_set_dest_runs (bool runs);

/* recover's part for interrupted incoming migrations under STATE_DIR:
 * each is finished (its guest runs here) or rolled back.  Returns what was
 * done ("" when there was nothing) or NULL with ERROR. */
char *sm_migrate_recover_incoming (const char *state_dir, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* Directory of the incoming journals: STATE/incoming. */
char *sm_migrate_incoming_dir (const char *state_dir)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_MIGRATE_H */
