/* libsnapmig — what the cross-host migration's modules share
 * (migrate-source.c, migrate-perform.c, migrate-dest.c, migrate.c).  Not
 * part of the library's API. */
#ifndef SM_MIGRATE_PRIVATE_H
#define SM_MIGRATE_PRIVATE_H

#include "journal.h"
#include "lsm.h"
#include "migrate.h"
#include "qemu-proc.h"

/* Undoing touches only what the guest wrote during the migration. */
#define SM_MIG_UNDO_TIMEOUT_MS 120000
/* A wait without progress this long fails, unless --timeout says. */
#define SM_MIG_STALL_MS 60000

/* The plan of begin: the VM view, the options, the migration id; QMP_PID
 * (0: looked up from the socket's path) is the QEMU whose command line the
 * destination starts from (/proc/PID/cmdline, the only thing read). */
SmMigCookie *sm_migrate_plan_begin (const SmLsmVm *vm, const char *qmp_address,
                                    pid_t qmp_pid, const SmMigOptions *o,
                                    const char *id, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* {"step": STEP, "phase": PHASE[, "error": ERR's message]}. */
bool sm_mig_journal_step (SmJournal *j, const char *step, const char *phase,
                          const GError *err, GError **error);
/* STATE/vms/KEY/journal/ID.journal of the source. */
char *sm_mig_journal_path (SmVmState *st, const char *id);
/* Whether RECORDS (a journal as sm_journal_load reads it, header first)
 * hold a record of STEP, in PHASE ("begin", "end"; NULL: any). */
bool sm_mig_records_have (json_object *records, const char *step,
                          const char *phase);

/* DOMAIN's file system has room for NEED bytes (the migrated disks'
 * required_bytes together, lib/precreate.h), else SM_ERROR_NO_SPACE naming
 * it, what is needed and what is free. */
bool sm_mig_check_room (const char *domain, uint64_t need, GError **error);

/* An event {"event": EVENT, KEY: VALUE...}: keys are "s:name" (const char
 * *, skipped when NULL), "u:name" (uint64_t), "b:name" (int); NULL ends. */
void sm_mig_emit (SmMigEventFn fn, void *opaque, const char *event,
                  const char *first_key, ...) G_GNUC_NULL_TERMINATED;

/* nbd-server-start on QMP: a unix socket DIR/ID-WHAT.sock, or TCP on HOST
 * at the first free port of PORT_MIN..PORT_MAX (0: the default range),
 * with TLS_CREDS (an object's id, NULL: plaintext).  *URI gets the
 * endpoint.  A range with no free port is SM_ERROR_BUSY naming it. */
bool sm_mig_nbd_server_start (SmQmp *qmp, bool unix_socket, const char *host,
                              const char *dir, const char *id,
                              const char *what, int port_min, int port_max,
                              const char *tls_creds, char **uri,
                              GError **error);

/* block-export-del of export NODE (if any) and blockdev-del of node NODE,
 * retried while QEMU still finishes the export; quiet, best effort. */
void sm_mig_del_export_node (SmQmp *qmp, const char *node);

/* One wait for a migration status (sm_mig_wait). */
typedef struct {
  const char *const *states;   /* NULL-ended: the wait ends at one of them */
  int stall_ms;                /* no RAM progress or status change this long:
                                  SM_ERROR_TIMEOUT (0: no limit) */
  int watch_fd;                /* -1, or see sm_mig_wait_status */
  const char *stage;           /* progress events' "stage" ("pre-copy",
                                  "post-copy"), NULL: none */
  SmMigEventFn fn;
  void *opaque;
  /* Called with each query-migrate reply; false (with ERROR) ends the wait
   * with that error.  NULL: none. */
  bool (*tick) (SmQmp *qmp, json_object *reply, void *data, GError **error);
  void *data;
  uint64_t *ram_bytes;         /* gets RAM bytes transferred, or NULL */
} SmMigWait;

bool sm_mig_wait (SmQmp *qmp, const SmMigWait *w, char **status,
                  GError **error);
/* A progress event of W's for a query-migrate "ram" object: done, total,
 * remaining, and with a stage postcopy-requests. */
void sm_mig_emit_ram_progress (const SmMigWait *w, json_object *ram);

/* Runs the destination's PHASE (DEST_ARGV PHASE DEST_EXTRA... EXTRA...)
 * with cookie C on its stdin and returns the cookie it answers, or NULL
 * with its error (events it prints are relayed to O's event function). */
SmMigCookie *sm_mig_dest_phase (const SmMigOptions *o,
                                const char *const *dest_argv,
                                const char *phase,
                                const char *const *dest_extra,
                                const char *const *extra, const SmMigCookie *c,
                                GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Removes the source's saved cookie and request of migration ID. */
void sm_mig_outgoing_clear (SmVmState *st, const char *id);

/* STATE/vms/KEY/journal/ID.EXT of the source: every file of an outgoing
 * migration (".journal"; ".created": the new tops begin made; ".cookie":
 * the cookie perform saved; ".start-postcopy": a request of
 * migrate-start-postcopy).  Caller frees. */
char *sm_mig_outgoing_path (SmVmState *st, const char *id, const char *ext)
  G_GNUC_WARN_UNUSED_RESULT;

/* The post-copy switch of a running perform: called by its RAM wait at
 * each poll; switches when C's policy or a request file says so (answers
 * the request), fails the wait when pre-copy did not converge within
 * O's converge_ms.  *SWITCHED set once migrate-start-postcopy was sent. */
typedef struct {
  SmMigCookie *c;
  const SmMigOptions *o;
  SmVmState *st;
  SmJournal *journal;
  gint64 ram_start;            /* monotonic time the RAM phase began */
  bool switched;
} SmMigSwitch;
bool sm_mig_switch_tick (SmQmp *qmp, json_object *reply, void *data,
                         GError **error);

/* Saves C as STATE/vms/KEY/journal/ID.cookie (atomically). */
bool sm_mig_save_outgoing (SmVmState *st, const SmMigCookie *c,
                           GError **error);

/* The source's post-copy after perform (the guest's vCPUs run on the
 * destination): waits for the migration to complete, recovering a failed
 * link (sm_migrate_recover_postcopy) — a stall of O's stall_timeout_ms or
 * both sides postcopy-paused.  FINISH_ALIVE (NULL: none), called at each
 * poll with FINISH_DATA, is the orchestrator's watch of the destination's
 * finish (it restarts it when its transport died).  Progress events with
 * stage "post-copy"; fills C's ram_bytes, postcopy_requests. */
/* What the destination's "its QEMU is gone" error (code not-found) says
 * when the guest never ran there. */
#define SM_MIG_GONE_NEVER_RAN " (it never ran the guest)"

/* A way to have the destination listen for the resumed stream (migrate's
 * recovery agent, sm_migrate_recover_agent): the endpoint, or NULL with
 * ERROR; *USED false when it is not there to ask (the one-shot
 * migrate-recover --incoming is run instead). */
typedef char *(*SmMigListenFn) (void *data, bool *used, GError **error);

bool sm_mig_postcopy_wait (SmQmp *qmp, SmVmState *st, SmMigCookie *c,
                           const SmMigOptions *o,
                           const char *const *dest_argv,
                           const char *const *dest_extra,
                           bool (*finish_alive) (void *data, GError **error),
                           void *finish_data, SmMigListenFn listen,
                           void *listen_data, GError **error);

/* Journal step names of post-copy: "postcopy" (source: begin before
 * migrate-start-postcopy, end once postcopy-active was seen; from then on
 * the guest is never resumed on the source) and "postcopy-active"
 * (destination: the incoming migration reached post-copy). */

/* Waits until the migration status on QMP is one of STATES (NULL-ended),
 * polling query-migrate (at once after a MIGRATION event, else every
 * 100 ms) and emitting RAM progress; SM_ERROR_TIMEOUT after STALL_MS
 * without progress (0: no limit — the destination, which sees no RAM
 * progress, is bounded by its caller).  WATCH_FD (-1: none) is the
 * orchestrator's end of a pipe: its end of file (the source's snapmig went
 * away) fails the wait with SM_ERROR_DISCONNECTED.  *STATUS gets the status reached. */
bool sm_mig_wait_status (SmQmp *qmp, const char *const *states,
                         int stall_ms, int watch_fd, SmMigEventFn fn,
                         void *opaque,
                         char **status, uint64_t *ram_bytes, GError **error);

/* The destination's listener for the migration stream: COMMAND
 * ("migrate-incoming", "migrate-recover") with a unix socket RUN_DIR/
 * SOCK_NAME when the cookie's NBD server is on a unix socket, else TCP on
 * the cookie's dest_host at the first free port of O's range (OOB: sent
 * with exec-oob on a connection that negotiated it).  *URI gets the
 * endpoint; a range with no free port is SM_ERROR_BUSY, QEMU's refusal
 * SM_ERROR_QMP. */
bool sm_mig_listen (SmQmp *qmp, const SmMigCookie *c,
                    const SmMigDestOptions *o, const char *command,
                    const char *sock_name, bool oob, char **uri,
                    GError **error);

/* The source's mirror job of DISK ("snapmig-migrate-DISK") and the NBD
 * client node of the INDEX-th disk.  Caller frees. */
char *sm_mig_mirror_job_id (const char *disk) G_GNUC_WARN_UNUSED_RESULT;
char *sm_mig_nbd_node (guint index) G_GNUC_WARN_UNUSED_RESULT;
/* True when none of C's mirrors is left but concluded ones (or QEMU is
 * gone); the wait polls it every 10 ms for up to MS. */
bool sm_mig_mirrors_ended (SmQmp *qmp, const SmMigCookie *c);
bool sm_mig_wait_mirrors_ended (SmQmp *qmp, const SmMigCookie *c, int ms);
/* The journal of ST's outgoing migration ID, reopened; SM_ERROR_NOT_FOUND
 * says to run migrate-begin first. */
SmJournal *sm_mig_reopen_journal (SmVmState *st, const char *id,
                                  GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Whether ST's outgoing migration ID journaled its `migrate` command (its
 * journal unreadable: true).  Before it, QEMU's migration status is not
 * this migration's. */
bool sm_mig_journal_started (SmVmState *st, const char *id);
/* QMP's migration status ("none" when it never migrated); NULL with ERROR
 * when QEMU does not answer.  Caller frees. */
char *sm_mig_status (SmQmp *qmp, GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Stops the source's layer server (begin) and deletes its nodes; quiet. */
void sm_migrate_stop_layer_server (SmQmp *qmp, const SmMigCookie *c);

/* Undoes begin's snapshot for every migrated disk still on its new top:
 * online (active commit back into the old top) with QMP, offline
 * (qemu-img commit) when QMP is NULL; then removes the files in CREATED
 * (the new tops).  Disks not on their new top are left alone. */
bool sm_migrate_fold_back (SmQmp *qmp, const SmMigCookie *c,
                           SmCreatedFiles *created, GError **error);

/* Rolls the source back (confirm --failed, recover): cancels the state
 * migration, the mirrors, NBD nodes and layer server, folds the snapshot
 * back, resumes the guest if it ran.  Refused when the migration completed
 * unless DEST_NEVER_RAN. */
bool sm_migrate_rollback_source (SmQmp *qmp, SmVmState *st, SmMigCookie *c,
                                 bool dest_never_ran, SmJournal *journal,
                                 GError **error);

/* [{"capability": NAME, "state": BOOL}, ...] from NAME, (int) STATE pairs. */
json_object *sm_mig_capabilities (const char *first, ...)
  G_GNUC_NULL_TERMINATED G_GNUC_WARN_UNUSED_RESULT;

/* ---- the destination's record (migrate-incoming.c) ---- */

/* What the journal says about the QEMU the destination started. */
typedef struct {
  char *run_dir;
  bool run_dir_created;
  char *created;
  char *qmp;
  pid_t pid;
  uint64_t start_time;
  bool finished;               /* journaled that the guest runs here */
  bool source_running;         /* the guest ran on the source */
  bool postcopy;               /* post-copy was enabled */
  bool postcopy_active;        /* journaled: the migration reached
                                  post-copy here (never undone from then) */
  char *recover_uri;           /* the last migrate-recover endpoint */
  int64_t resumed_at_us;       /* post-copy: when the guest resumed here */
  char *state_dir;             /* the journal's state directory */
  char *id;                    /* the migration's id (the journal's name) */
} SmMigIncoming;

/* Reads the incoming journal at PATH into IN (cleared by the caller with
 * sm_mig_incoming_clear). */
bool sm_mig_incoming_read (const char *path, SmMigIncoming *in,
                           GError **error);
/* The same, SM_ERROR_NOT_FOUND naming migration ID when PATH is missing. */
bool sm_mig_incoming_load (const char *path, const char *id,
                           SmMigIncoming *in, GError **error);

/* RUN_DIR/snapmig-ctl.qmp: the destination QEMU's second monitor of
 * snapmig's, for post-copy recovery while finish holds the first. */
char *sm_mig_ctl_qmp_path (const char *run_dir) G_GNUC_WARN_UNUSED_RESULT;

/* STATE/incoming/ID.EXT.  Caller frees. */
char *sm_mig_incoming_path (const char *state_dir, const char *id,
                            const char *ext) G_GNUC_WARN_UNUSED_RESULT;
/* The journal of incoming migration COOKIE (op "migrate-in"), its header
 * naming the run directory (RUN_DIR_CREATED: prepare made it) and the
 * record of created files. */
SmJournal *sm_mig_incoming_journal_open (const char *state_dir,
                                         const SmMigCookie *c,
                                         const char *run_dir,
                                         bool run_dir_created, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;
/* Journals the QEMU prepare started (PID, start time, monitor). */
bool sm_mig_incoming_journal_qemu (SmJournal *j, const SmQemuProc *p,
                                   const char *qmp, GError **error);
void sm_mig_incoming_clear (SmMigIncoming *in);
/* Removes what prepare made: QEMU stopped (refused when its guest runs),
 * created files removed, run directory emptied. */
bool sm_mig_incoming_cleanup (const SmMigIncoming *in, GError **error);
/* The destination's bound on a wait without progress. */
int sm_mig_dest_stall_ms (const SmMigDestOptions *o);

/* ---- transport (issue 12) ---------------------------------------------- */

/* The cookie's name of a mode: "tunnel", "tls", "unix" or "tcp". */
const char *sm_mig_transport_name (bool tunnel, bool tls, bool unix_sockets);

/* A destination phase given TUNNEL/TLS/UNIX_SOCKETS checks that the
 * source's cookie C names the same mode: SM_ERROR_INVALID naming both and
 * the option to give otherwise (before anything moves). */
bool sm_mig_check_transport (const SmMigCookie *c, bool tunnel, bool tls,
                             bool unix_sockets, GError **error);

/* The endpoint the source connects to for the destination's URI: itself,
 * or with O's tunnel the local end of a forward to it (added on first
 * use).  Caller frees. */
char *sm_mig_source_endpoint (const SmMigOptions *o, const char *uri,
                              GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* --tunnel: the tunnel to the destination through DEST_ARGV (its private
 * directory beside the journal, STATE/vms/KEY/journal/XXXXXXXX-tunnel, a
 * new name when a killed snapmig left one), and the reverse forward of
 * begin's layer server (C's layers_uri) that prepare pulls from. */
struct SmTunnel *sm_mig_tunnel_open (SmVmState *st, const SmMigCookie *c,
                                     const SmMigOptions *o,
                                     const char *const *dest_argv,
                                     const char *const *dest_extra,
                                     GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Where the source's unix sockets of a migration go (the layer server's,
 * the tunnel's directory): beside the journal (STATE/vms/KEY/journal),
 * unless their paths would not fit a unix socket address (108 bytes, with
 * room for the longest name, ssh's control socket's temporary one) — then
 * $XDG_RUNTIME_DIR, else /tmp, with names that say whose
 * (snapmig-XXXXXXXX-tunnel, XXXXXXXX-layers-snapmig.sock).  Caller
 * frees. */
char *sm_mig_socket_dir (SmVmState *st) G_GNUC_WARN_UNUSED_RESULT;

/* recover: the private directories of migration ID's tunnels whose
 * process is gone (killed with its snapmig) are removed with what they
 * hold (sockets, transport.pid, ssh's control socket, logs); one whose
 * transport still runs is left alone. */
void sm_mig_tunnel_leftovers (SmVmState *st, const char *id);

/* Milliseconds a copy waits for a lost link: O's, else the default. */
int sm_mig_link_timeout_ms (int link_timeout_ms);

/* ---- TLS (issue 12, lib/migrate-tls.c) ---------------------------------- */

/* Checks that DIR (--tls-creds) holds QEMU's five x509 files, readable PEM:
 * SM_ERROR_NOT_FOUND (DIR or a file missing) or SM_ERROR_INVALID naming
 * the file and what DIR must hold; DIR NULL is SM_ERROR_INVALID naming
 * --tls-creds.  Run before anything moves, on each host. */
bool sm_mig_tls_check_dir (const char *dir, GError **error);

/* Whether cookie C's streams are TLS (its transport "tls"). */
bool sm_mig_tls_used (const SmMigCookie *c);

/* The ids of C's tls-creds-x509 objects, sm-tls-srv-XXXXXXXX (a server,
 * verify-peer) and sm-tls-cli-XXXXXXXX (a client), XXXXXXXX the last 8
 * characters of C's id; NULL when C does not use TLS.  Caller frees. */
char *sm_mig_tls_server_id (const SmMigCookie *c) G_GNUC_WARN_UNUSED_RESULT;
char *sm_mig_tls_client_id (const SmMigCookie *c) G_GNUC_WARN_UNUSED_RESULT;

/* The source QEMU's objects (begin, before the layer server): the server
 * and the client credentials from DIR.  Nothing without TLS. */
bool sm_mig_tls_source_setup (SmQmp *qmp, const SmMigCookie *c,
                              const char *dir, GError **error);
/* The destination QEMU's (prepare, before nbd-server-start and
 * migrate-incoming): the server credentials from DIR, and the migration
 * parameter tls-creds naming them.  Nothing without TLS. */
bool sm_mig_tls_dest_setup (SmQmp *qmp, const SmMigCookie *c,
                            const char *dir, GError **error);

/* Adds to PARAMS (migrate-set-parameters of the source, before migrate)
 * tls-creds and tls-hostname (the destination's address): C's, or "" when
 * C does not use TLS, so that no earlier migration's are used. */
void sm_mig_tls_parameters (const SmMigCookie *c, json_object *params);

/* The destination's qemu-img convert from the source's layer server: the
 * extra arguments (--object tls-creds-x509 from DIR; empty without TLS;
 * g_strfreev), and the source image: a json: file name of the raw bytes of
 * EXPORT over NBD at URI whose client reconnects for RECONNECT_S seconds
 * (a link that comes back within it costs a pause, not a new copy), with
 * tls-creds and tls-hostname (the source's address) under TLS; NULL with
 * ERROR.  Caller frees. */
char **sm_mig_tls_pull_argv (const SmMigCookie *c, const char *dir)
  G_GNUC_WARN_UNUSED_RESULT;
char *sm_mig_layer_source (const SmMigCookie *c, const char *uri,
                           const char *export, int reconnect_s,
                           GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Appends to *ERROR (a TLS connection to HOST, given by OPTION, failed)
 * what the certificates must be, and the names DIR's server certificate
 * has (DIR NULL: not said); nothing without TLS. */
void sm_mig_tls_hint (const SmMigCookie *c, const char *dir,
                      const char *host, const char *option, GError **error);

/* Deletes the source's server credentials once its layer server stopped;
 * quiet. */
void sm_mig_tls_del_server (SmQmp *qmp, const SmMigCookie *c);

/* Undoes TLS on QMP's QEMU (every exit of the source: roll-back, recover;
 * the destination's finish): the migration parameters tls-creds and
 * tls-hostname back to "" when they are C's, C's objects deleted.  Quiet,
 * best effort; servers using them stopped first. */
void sm_mig_tls_remove (SmQmp *qmp, const SmMigCookie *c);

#endif /* SM_MIGRATE_PRIVATE_H */
