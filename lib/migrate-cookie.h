/* libsnapmig — the migration cookie: the XML document the source and the
 * destination of a cross-host migration (`snapmig migrate`) exchange between
 * their phases, on stdin/stdout.
 *
 * It is a libvirt <qemu-migration> cookie (name, uuid, hostname, <nbd port>
 * with <disk target capacity>, as ../shared/corpus/libvirt-migration-cookie
 * has them) plus one <snapmig> element carrying what snapmig needs beyond
 * libvirt's: the migration id and phase, the storage mode, each disk's chain
 * layout (layers with formats, virtual sizes, relative backing names, the
 * role of each layer), the source QEMU's command line, the endpoints of both
 * sides (unix socket paths or TCP host:port, so that a tunnel can replace
 * either), the destination's QEMU (PID, sockets, run directory) and the
 * outcome of a phase.  Every read is validated against
 * schemas/migration-cookie.rng (embedded, see lib/schemas.S) before it is
 * interpreted; a libvirt cookie without <snapmig> is accepted and yields its
 * name, uuid, hostname and <nbd> part only.
 *
 * Endpoints are written as QEMU migration URIs: "tcp:HOST:PORT" (an IPv6
 * HOST in brackets) or "unix:/ABSOLUTE/PATH".
 */
#ifndef SM_MIGRATE_COOKIE_H
#define SM_MIGRATE_COOKIE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "error.h"
#include "image.h"

typedef enum {
  SM_MIG_STORAGE_CHAIN,        /* --copy-storage-all: keep the chain */
  SM_MIG_STORAGE_FLAT,         /* --flatten: one image per disk (libvirt) */
  SM_MIG_STORAGE_INC,          /* --copy-storage-inc: only the top moves */
  SM_MIG_STORAGE_LAST
} SmMigStorage;
/* "chain", "flat", "inc"; NULL out of range. */
const char *sm_mig_storage_to_string (SmMigStorage s);
int sm_mig_storage_from_string (const char *s);   /* -1 when unknown */

typedef enum {
  SM_MIG_LAYER_TOP,            /* the disk's active layer on the destination:
                                  pre-created empty, filled by the mirror */
  SM_MIG_LAYER_COPY,           /* read-only lower layer, copied to the
                                  destination before its QEMU starts */
  SM_MIG_LAYER_SHARED,         /* on storage both hosts see, same path */
  SM_MIG_LAYER_ROLE_LAST
} SmMigLayerRole;
/* "top", "copy", "shared" */
const char *sm_mig_layer_role_to_string (SmMigLayerRole r);
int sm_mig_layer_role_from_string (const char *s);

typedef struct {
  SmMigLayerRole role;
  char *file;                  /* absolute path on the source host */
  char *name;                  /* destination file name (plain base name;
                                  SHARED: NULL, the file keeps its path) */
  SmImageFormat format;
  uint64_t virtual_size;
  uint64_t file_size;          /* bytes of the source file (COPY: what the
                                  copy transfers at most) */
  uint64_t allocated;          /* allocated bytes of the source file */
  uint64_t cluster_size;       /* qcow2; 0 for raw */
  char *backing;               /* backing name to write on the destination
                                  (relative, or absolute for a SHARED layer
                                  below), NULL for the bottom layer */
  SmImageFormat backing_format;  /* SM_IMAGE_FORMAT_LAST without backing */
  char *export;                /* COPY: export name of the layer's bytes on
                                  the source's layer server, else NULL */
} SmMigLayer;

typedef struct {
  char *name;                  /* lasting disk name ("vda", "drive0") */
  char *id;                    /* QMP id on the source (device or node) */
  bool migrate;                /* false: left on shared storage */
  SmImageFormat format;        /* the active layer's format */
  uint64_t capacity;           /* virtual size, bytes */
  char *source_top;            /* the active layer QEMU runs on at the
                                  source when the migration starts */
  char *source_new_top;        /* CHAIN: the snapshot's new top on the
                                  source, else NULL */
  char *export;                /* the destination's NBD export name */
  char *dest_top;              /* set by prepare: the destination's active
                                  layer (absolute) */
  GPtrArray *layers;           /* SmMigLayer *, index 0 = what the
                                  destination's QEMU opens as the top */
} SmMigDisk;

typedef struct {
  /* identity */
  char *id;                    /* migration id: [A-Za-z0-9-]+ */
  char *phase;                 /* phase that wrote it: "begin", "prepare",
                                  "perform", "finish", "confirm" */
  char *name;                  /* the VM's name (-name, else the QMP
                                  socket's base name) */
  char *uuid;                  /* the VM's -uuid, else generated */
  char *hostname;              /* host that wrote the cookie */
  SmMigStorage storage;
  uint64_t bandwidth;          /* bytes/s, 0: none */
  char *copy_mode;             /* NULL, "background", "write-blocking" */
  bool postcopy;               /* postcopy-ram on both sides (prepare
                                  clears it when it falls back) */
  bool postcopy_after_precopy; /* switch after the first full pass */
  bool postcopy_fallback;      /* prepare may fall back to pre-copy */
  uint64_t postcopy_bandwidth; /* max-postcopy-bandwidth, bytes/s, 0:
                                  unlimited */
  int parallel;                /* multifd channels, 0: off */
  char *transport;             /* how the streams travel, the same on both
                                  sides (prepare refuses a mismatch):
                                  "tcp", "unix", "tls" (x509, tls-creds on
                                  both QEMUs and qemu-img) or "tunnel"
                                  (unix sockets at both ends joined through
                                  the --dest-cmd connection, lib/tunnel.h);
                                  NULL read as "tcp" */
  int link_timeout;            /* seconds a copy waits for a lost link to
                                  come back (NBD reconnect-delay, mirrors
                                  resumed) before it fails; 0: default */

  /* source */
  char *source_host;           /* address the destination reaches the
                                  source at (for the layer server) */
  char *source_qmp;            /* absolute socket path */
  int64_t source_pid;
  bool source_running;         /* the guest ran when begin looked */
  char **qemu_argv;            /* the source QEMU's command line (NULL when
                                  --dest-qemu gives one) */
  char *layers_uri;            /* the source's NBD server of COPY layers,
                                  or NULL */
  GPtrArray *disks;            /* SmMigDisk * */

  /* destination (prepare fills these) */
  char *dest_host;             /* address the source reaches it at */
  char *dest_domain;           /* absolute */
  char *dest_run_dir;          /* absolute */
  char *dest_qmp;              /* snapmig's own monitor of the destination
                                  QEMU */
  char *dest_user_qmp;         /* the VM's own monitor, remapped (or NULL) */
  int64_t dest_pid;
  char *nbd_uri;               /* the destination's NBD server */
  char *migrate_uri;           /* its incoming migration endpoint */

  /* outcome of the phase that wrote it */
  bool failed;
  char *error_phase;           /* phase that failed, or NULL */
  char *error_message;
  bool dest_ran;               /* finish: the guest ran on the destination */
  uint64_t disk_bytes;         /* bytes of disk data moved (all disks) */
  uint64_t ram_bytes;          /* bytes of RAM moved */
  int64_t pause_us;            /* guest pause at switchover, -1 unknown */
  int64_t stopped_at_us;       /* perform: wall time (us since the epoch)
                                  of the source's STOP event at switchover,
                                  0 unknown; finish measures the pause from
                                  it to the destination's RESUME event */
  int64_t resumed_at_us;       /* finish: wall time of the destination's
                                  RESUME event, 0 unknown */
  char *postcopy_refused;      /* prepare: why this destination cannot
                                  post-copy (it fell back), or NULL */
  bool postcopy_used;          /* perform: the switch to post-copy was
                                  made */
  uint64_t postcopy_requests;  /* pages the destination requested on
                                  demand during post-copy */
  int recoveries;              /* post-copy recoveries after a link
                                  failure */
  int link_resumes;            /* perform: times the disks' copy went on
                                  after a lost link came back */
  int64_t tunnel_bytes;        /* migrate --tunnel: bytes the tunnel
                                  carried both ways (relay mode), 0
                                  unknown */
} SmMigCookie;

SmMigCookie *sm_mig_cookie_new (void) G_GNUC_WARN_UNUSED_RESULT;
void sm_mig_cookie_free (SmMigCookie *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmMigCookie, sm_mig_cookie_free)
SmMigDisk *sm_mig_disk_new (const char *name) G_GNUC_WARN_UNUSED_RESULT;
void sm_mig_disk_free (SmMigDisk *d);
SmMigLayer *sm_mig_layer_new (SmMigLayerRole role) G_GNUC_WARN_UNUSED_RESULT;
void sm_mig_layer_free (SmMigLayer *l);
SmMigDisk *sm_mig_cookie_find_disk (const SmMigCookie *c, const char *name);

/* The whole <qemu-migration> document, libvirt's layout (two-space indent,
 * single-quoted attributes): <name>, <uuid>, <hostname>, <nbd> (port when
 * nbd_uri is TCP; one <disk target capacity> per migrated disk) and
 * <snapmig> (one attribute per field, see schemas/migration-cookie.rng).
 * What sm_mig_cookie_parse gives back equals C, with these normal forms:
 * a NULL name is written empty and a NULL uuid as the nil UUID (the schema
 * requires both), and both read back as NULL; a PID <= 0 is left out and
 * reads back as 0; a negative pause_us is left out and reads back as -1.
 * Caller frees. */
char *sm_mig_cookie_format (const SmMigCookie *c) G_GNUC_WARN_UNUSED_RESULT;

/* Validates XML (LEN bytes, or -1 for NUL-terminated) against the schema,
 * then reads it.  SM_ERROR_XML for malformed or invalid XML (the message
 * names "migration cookie" and the line), SM_ERROR_INVALID for a cookie
 * whose meaning is wrong (a relative path, a COPY layer without export, an
 * unknown disk in <nbd>, two disks of one name, a bad URI).  Caller
 * frees. */
SmMigCookie *sm_mig_cookie_parse (const char *xml, gssize len,
                                  GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Reads a cookie from FD until EOF or until the line "</qemu-migration>"
 * has been read (so that a peer can keep its end open), at most 16 MiB,
 * bounded by TIMEOUT_MS (<= 0: none), then sm_mig_cookie_parse.  Nothing
 * after that line is read: it stays in FD for the next reader.  EOF before
 * any byte is SM_ERROR_DISCONNECTED "no migration cookie: PEER closed its
 * output" (PEER names the other side for messages); the deadline
 * SM_ERROR_TIMEOUT, an interruption request (interrupt.h)
 * SM_ERROR_INTERRUPTED, a failed read SM_ERROR_IO, more than 16 MiB
 * SM_ERROR_INVALID; parse errors name "migration cookie from PEER". */
SmMigCookie *sm_mig_cookie_read_fd (int fd, const char *peer, int timeout_ms,
                                    GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Endpoint URIs.  Parses "tcp:HOST:PORT" / "unix:PATH" into QEMU's
 * SocketAddress JSON for nbd-server-start / blockdev-add nbd "server"
 * ({"type":"inet","host":H,"port":"P"} or {"type":"unix","path":P});
 * SM_ERROR_INVALID otherwise.  Caller puts. */
struct json_object;
struct json_object *sm_mig_uri_to_socket_address (const char *uri,
                                                  GError **error);

#endif /* SM_MIGRATE_COOKIE_H */
