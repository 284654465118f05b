/* libsnapmig — QMP client (json-c).
 *
 * One SmQmp is one connection to one QEMU monitor.  Replies and events share
 * the socket: events read while waiting for a reply are queued and handed out
 * by sm_qmp_wait_event in arrival order.
 *
 * Errors: a QMP error reply becomes SM_ERROR_QMP with message
 * "COMMAND: DESC" (plus the disk when the caller adds it); QEMU's class is kept
 * in sm_qmp_last_error_class().  A closed socket is SM_ERROR_DISCONNECTED
 * ("QEMU closed the monitor connection SOCKET"), never a hang.  The full
 * request and reply go to sm_debug() only.
 *
 * Every wait is bounded: the connect (non-blocking, also when the monitor's
 * backlog is full), the greeting, each reply (sm_qmp_set_timeout, 30 s by
 * default) and each event wait (its own timeout).  Deadlines are checked
 * while bytes keep arriving, and a line longer than SM_QMP_MAX_LINE gives
 * up the connection.  Every wait checks sm_interrupt_check (interrupt.h)
 * before waiting and when a signal ends it: SM_ERROR_INTERRUPTED.
 */
#ifndef SM_QMP_H
#define SM_QMP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>
#include <json-c/json.h>

#include "error.h"

typedef struct SmQmp SmQmp;

/* The reply timeout of a new connection, and of a connect given 0: libvirt
 * waits as long for a QEMU job's monitor (QEMU_JOB_WAIT_TIME).  No QMP
 * command snapmig sends takes QEMU longer than a fraction of that; block
 * jobs run after their command has been answered. */
#define SM_QMP_DEFAULT_TIMEOUT_MS 30000

/* The longest line (one QMP message) accepted: 64 MiB.  QEMU's own JSON
 * parser refuses input messages above the same size (MAX_TOKEN_SIZE in
 * qobject/json-streamer.c); the largest replies snapmig asks for
 * (query-block with every layer of every disk, query-named-block-nodes
 * with flat=true, query-commands) are a few MB even for a hundred disks of
 * fifty layers.  A longer line is SM_ERROR_QMP_PROTOCOL naming the monitor,
 * and the connection is closed: memory stays bounded whatever a peer
 * sends. */
#define SM_QMP_MAX_LINE ((size_t) 64 << 20)

/* Connects to ADDRESS — a unix socket path, or "host:port" for TCP (a path
 * containing '/' is always a socket; "[v6addr]:port" works too) — reads the
 * greeting and negotiates capabilities.  TIMEOUT_MS bounds the whole
 * handshake, connect included (0 or less: SM_QMP_DEFAULT_TIMEOUT_MS); it is
 * not the reply timeout of the connection (sm_qmp_set_timeout).  A socket
 * nobody listens on fails at once (SM_ERROR_IO naming ADDRESS).
 * SM_ERROR_TIMEOUT, naming ADDRESS: a monitor whose backlog stays full ("it
 * accepted no connection"), or a peer that sends no greeting (another
 * client holds the monitor, or QEMU is stopped) — QEMU may be alive, so a
 * caller must not take it for dead.  Something else than a greeting is
 * SM_ERROR_QMP_PROTOCOL.  Caller frees with sm_qmp_free.
 */
SmQmp *sm_qmp_connect (const char *address, int timeout_ms, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;
void sm_qmp_free (SmQmp *qmp);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmQmp, sm_qmp_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_object, json_object_put)

const char *sm_qmp_address (const SmQmp *qmp);

/* The PID of the QEMU at the other end (SO_PEERCRED of a unix socket), 0
 * for TCP or when the kernel cannot say.  Unlike a look-up of the socket's
 * path, it works from any network namespace. */
pid_t sm_qmp_peer_pid (const SmQmp *qmp);

/* Per-command reply timeout (ms) for sm_qmp_execute and the functions built
 * on it: the wait from sending the command to the end of its whole reply.
 * 0 or less restores SM_QMP_DEFAULT_TIMEOUT_MS; there is no "forever".  A
 * command that times out is SM_ERROR_TIMEOUT "COMMAND: QEMU monitor SOCKET
 * did not answer within N s"; its late reply is recognised by id and
 * dropped, as is the reply to a command whose wait was interrupted.
 *
 * After a timeout the connection counts as stalled: the commands that
 * follow (an error path resuming the guest or cancelling a job) share half
 * a second more in all, so that a QEMU that stopped answering costs a
 * caller its timeout plus half a second, not a timeout per command (a
 * guest it paused stays paused then: the caller's journal says so, and
 * recover resumes it).  Any message
 * from QEMU (the late reply, an event) ends the stall. */
void sm_qmp_set_timeout (SmQmp *qmp, int timeout_ms);

/* sm_qmp_connect negotiating out-of-band execution (capability "oob"):
 * SM_ERROR_UNSUPPORTED when the monitor does not offer it.  Then
 * sm_qmp_execute_oob sends COMMAND (ARGS consumed) as "exec-oob": QEMU's
 * monitor thread runs it even while the main loop waits for the global
 * lock (a vCPU waiting for a post-copy page holds it), where every in-band
 * command, qmp_capabilities included, waits too.  Only commands QEMU marks
 * allow-oob (migrate-pause, migrate-recover). */
SmQmp *sm_qmp_connect_oob (const char *address, int timeout_ms,
                           GError **error) G_GNUC_WARN_UNUSED_RESULT;
json_object *sm_qmp_execute_oob (SmQmp *qmp, const char *command,
                                 json_object *args, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;
int sm_qmp_get_timeout (const SmQmp *qmp);

/* Lowers the line limit below SM_QMP_MAX_LINE (0 restores it): for tests,
 * so that they need not send 64 MiB. */
void sm_qmp_set_max_line (SmQmp *qmp, size_t bytes);

/* Typed argument builder, in the manner of libvirt's:
 *   sm_qmp_args ("s:device", dev, "S:job-id", maybe_null,
 *                "b:force", true, "i:speed", (int64_t) 0, "P:buf-size", n,
 *                "a:actions", array, "o:opts", obj, NULL)
 * Keys are "T:name"; T is
 *   s  string (must be non-NULL)          S  string, skipped when NULL
 *   b  bool (int vararg)                  B  bool, skipped when false
 *   i  int64_t                            u  uint64_t
 *   P  uint64_t, skipped when 0           j  json_object * (consumed, may be NULL
 *                                            only for J)
 *   J  json_object *, skipped when NULL (consumed)
 * Returns a new object, or NULL with error on a bad key or a NULL "s" value
 * (a programming error reported as SM_ERROR_INVALID naming the key).
 */
json_object *sm_qmp_args (GError **error, const char *first, ...)
  G_GNUC_NULL_TERMINATED G_GNUC_WARN_UNUSED_RESULT;

/* Executes COMMAND with ARGS (consumed; may be NULL).  Returns the reply's
 * "return" value (a new reference; caller puts) or NULL with error: a QMP
 * error reply is SM_ERROR_QMP "COMMAND: DESC", QEMU gone
 * SM_ERROR_DISCONNECTED, no reply within sm_qmp_set_timeout's limit
 * SM_ERROR_TIMEOUT.  Events that arrive meanwhile are queued.
 *
 * If *ERROR is already set, nothing is sent and NULL is returned, so that
 *   sm_qmp_run (qmp, "drive-mirror", sm_qmp_args (&err, ...), &err)
 * is safe when the builder fails.
 */
json_object *sm_qmp_execute (SmQmp *qmp, const char *command, json_object *args,
                             GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Like sm_qmp_execute, and the reply's "return" must be of TYPE
 * (json_type_object for query-status, json_type_array for query-block, ...):
 * anything else is SM_ERROR_QMP_PROTOCOL naming the command, so that no
 * caller reads a reply of the wrong shape.  Caller puts. */
json_object *sm_qmp_execute_type (SmQmp *qmp, const char *command,
                                  json_object *args, json_type type,
                                  GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Like sm_qmp_execute but discards the return value. */
bool sm_qmp_run (SmQmp *qmp, const char *command, json_object *args,
                 GError **error);

/* Sends the N commands COMMANDS[i] with ARGS[i] (each consumed and set to
 * NULL; may be NULL) one after the other without waiting, then reads their
 * replies (QEMU answers in order): ERRORS[i] gets command i's error
 * (SM_ERROR_QMP "COMMAND: DESC"), or NULL when it succeeded.  Returns false
 * with ERROR only when the batch as a whole failed (QEMU gone, no reply
 * within sm_qmp_set_timeout's limit): commands before the failure may have
 * run.  Events that arrive meanwhile are queued. */
bool sm_qmp_run_batch (SmQmp *qmp, guint n, const char *const *commands,
                       json_object **args, GError **errors, GError **error);

/* QEMU's error class ("GenericError", "DeviceNotFound", ...) of the last QMP
 * error reply on this connection, or NULL.
 */
const char *sm_qmp_last_error_class (const SmQmp *qmp);

/* Runs an HMP command through human-monitor-command; returns its output
 * (caller frees).  HMP reports failure in text, so the caller judges it.
 */
char *sm_qmp_hmp (SmQmp *qmp, const char *command_line, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* Events.  An event is the whole QMP object {"event":..,"data":..,
 * "timestamp":..}. */
typedef bool (*SmQmpEventMatch) (json_object *event, void *opaque);

/* Returns (and removes from the queue) the first event named NAME (NULL: any
 * name) for which MATCH (may be NULL) returns true, reading the socket until
 * TIMEOUT_MS passes (-1: no deadline, for callers that bound the wait
 * otherwise; 0: only what is already queued/readable).  A signal ends any
 * wait (SM_ERROR_INTERRUPTED).
 * Non-matching events stay queued.  Timeout is SM_ERROR_TIMEOUT; QEMU gone
 * is SM_ERROR_DISCONNECTED, even with -1.  Caller puts the event.
 */
json_object *sm_qmp_wait_event (SmQmp *qmp, const char *name,
                                 SmQmpEventMatch match, void *opaque,
                                 int timeout_ms, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* An event's "timestamp" (QEMU's realtime clock) in microseconds since the
 * epoch, or -1 when it has none. */
gint64 sm_qmp_event_time_us (json_object *event);

/* Drops every queued event. */
void sm_qmp_clear_events (SmQmp *qmp);

/* Capabilities probed from query-version, query-commands and
 * query-migrate-capabilities (one round trip each, cached). */
typedef enum {
  SM_QMP_CAP_TRANSACTION,
  SM_QMP_CAP_BLOCKDEV_SNAPSHOT_SYNC,
  SM_QMP_CAP_DRIVE_MIRROR,
  SM_QMP_CAP_MIRROR_COPY_MODE,      /* drive-mirror copy-mode (QEMU >= 3.0) */
  SM_QMP_CAP_BLOCK_JOB_COMPLETE,
  SM_QMP_CAP_BLOCK_JOB_CANCEL,
  SM_QMP_CAP_BLOCK_STREAM,
  SM_QMP_CAP_BLOCK_COMMIT,
  SM_QMP_CAP_NBD_SERVER,            /* nbd-server-start/add/stop */
  SM_QMP_CAP_BLOCK_EXPORT_ADD,
  SM_QMP_CAP_MIGRATE,
  SM_QMP_CAP_MIGRATE_POSTCOPY,      /* migration capability postcopy-ram */
  SM_QMP_CAP_QUERY_NAMED_BLOCK_NODES,
  SM_QMP_CAP_LAST
} SmQmpCap;

const char *sm_qmp_cap_to_string (SmQmpCap cap);

typedef struct {
  int major, minor, micro;
  bool caps[SM_QMP_CAP_LAST];
} SmQmpCaps;

/* Probes once per connection; later calls return the cached result (owned
 * by QMP).  Command caps come from query-commands; MIRROR_COPY_MODE from the
 * version (drive-mirror's copy-mode is QEMU >= 3.0); MIGRATE_POSTCOPY from
 * query-migrate-capabilities listing postcopy-ram.
 *
 * The environment variable SNAPMIG_QMP_DISABLE (comma-separated cap names as
 * printed by sm_qmp_cap_to_string: transaction, blockdev-snapshot-sync,
 * drive-mirror, mirror-copy-mode, block-job-complete, block-job-cancel,
 * block-stream, block-commit, nbd-server, block-export-add, migrate,
 * postcopy-ram, query-named-block-nodes) masks capabilities, so that
 * fallback paths can be tested against a QEMU that has them all.  An unknown
 * name is SM_ERROR_INVALID, so that a typo cannot silently test nothing.
 */
const SmQmpCaps *sm_qmp_probe (SmQmp *qmp, GError **error);

#endif /* SM_QMP_H */
