/* libsnapmig — `snapmig migrate --connect URI --domain NAME --dest-connect
 * URI2` (issue 14): a libvirt domain with its local disks to another
 * libvirt host, through libvirt's own migration (virDomainMigrate3), on
 * snapmig's sizing and pre-creation code (lib/precreate.h).
 *
 *   plan      the domain's view through lib/vm-access.h (found, running,
 *             no block job on a migrated disk); per migrated disk its chain read
 *             from the image headers and a precreate plan in DEST_DOMAIN:
 *             --copy-storage-all one flat image (libvirt's NBD copy is
 *             sync=full into one image), --copy-storage-inc the whole chain
 *             (relative backing names); every plan checked (room, no
 *             existing target) before any file is made
 *   create    the files made (sm_precreate_execute), each recorded;
 *             --copy-storage-inc: the lower layers, read-only while the
 *             domain runs, copied into theirs (lib/layer-copy.h), their
 *             backing names set; the top is left for libvirt's NBD copy
 *             (sync=top), which libvirt does not pre-create
 *   migrate   virDomainMigrate3 from the source to the destination
 *             connection with LIVE | PERSIST_DEST | UNDEFINE_SOURCE |
 *             NON_SHARED_DISK (or NON_SHARED_INC), the destination XML
 *             (live and persistent) naming the pre-created tops,
 *             migrate_disks, bandwidth; progress from virDomainGetJobStats
 *             every 0.5 s; no progress for TIMEOUT_MS aborts the job
 *             (virDomainAbortJob)
 *
 * UNDEFINE_SOURCE: the source's persistent definition names the old disks;
 * kept, a later `virsh start` there would boot a second copy of the guest
 * on files that miss every write since the migration.
 *
 * Connections: the view through an access; the migration's own source and
 * destination connections opened within TIMEOUT_MS with the access's
 * keepalive (lib/vm-libvirt-migrate.h).
 *
 * Failure: libvirt's own rollback leaves the domain running on the source;
 * snapmig then removes exactly the files it created (and nothing it did
 * not).  The files are made by this process: DEST_DOMAIN is a path this
 * host reaches (a shared file system, or the destination's when both
 * daemons run here).
 */
#ifndef SM_MIGRATE_LIBVIRT_H
#define SM_MIGRATE_LIBVIRT_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-c/json.h>

#include "error.h"
#include "migrate.h"

typedef struct {
  const char *uri;             /* the source libvirt (--connect) */
  const char *domain;          /* the running domain, name or UUID */
  const char *dest_uri;        /* the destination libvirt (--dest-connect) */
  const char *dest_domain;     /* the directory the disks go to */
  SmMigStorage storage;        /* CHAIN or FLAT: copy-storage-all (one flat
                                  image per disk, libvirt's copy); INC */
  char **disks;                /* --migrate-disks (targets); NULL: every
                                  writable disk with a file */
  uint64_t bandwidth;          /* bytes/s, 0: none (libvirt takes MiB/s:
                                  rounded up) */
  const char *dest_host;       /* the address the destination listens on
                                  (migration URI tcp://HOST and NBD listen
                                  address); NULL: libvirt's default, the
                                  destination's host name */
  int timeout_ms;              /* no progress this long fails (0: 60 s) */
  bool dry_run;                /* plan and check only: the result's plan
                                  says what would be made; nothing changes */
  SmMigEventFn event;
  void *opaque;
} SmMigLibvirtOptions;

typedef struct {
  char *disk;                  /* target ("vda") */
  char *dest_top;              /* the file the destination runs on */
} SmMigLibvirtDisk;

typedef struct {
  char *domain;                /* the domain's name */
  GPtrArray *disks;            /* SmMigLibvirtDisk * */
  uint64_t disk_bytes;         /* as libvirt's job stats counted them */
  uint64_t ram_bytes;
  json_object *plan;           /* dry_run: {"disks": [{"disk", "file",
                                  "layers": [{"file", "format",
                                  "virtual-size", "required-bytes",
                                  "source", "backing"}]}]}, else NULL */
} SmMigLibvirtResult;

void sm_mig_libvirt_result_free (SmMigLibvirtResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmMigLibvirtResult, sm_mig_libvirt_result_free)

/* The destination's domain XML: XML (libvirt's, live or inactive) with
 * the <source file> of each disk whose target FILES maps (target → file)
 * set to that file and its <backingStore> dropped (libvirt reads the chain
 * from the headers); every other disk as it was.  SM_ERROR_QMP_PROTOCOL for
 * XML that does not parse, SM_ERROR_INVALID when a target of FILES is not
 * a disk of XML.  Pure; built with or without libvirt.  Caller frees. */
char *sm_mig_libvirt_dest_xml (const char *xml, GHashTable *files,
                               GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Runs the migration above.  Errors: SM_ERROR_UNSUPPORTED "snapmig was
 * built without libvirt (install libvirt-dev and rebuild)"; the access's
 * (the source unreachable, no such domain, not running); SM_ERROR_BUSY for
 * a migrated disk with a block job; the
 * precreate checks' (SM_ERROR_NOT_FOUND naming a missing DEST_DOMAIN,
 * SM_ERROR_EXISTS, SM_ERROR_NO_SPACE) before anything changed; SM_ERROR_QMP
 * "virDomainMigrate3: MESSAGE" (libvirt refused or failed: the domain still
 * runs on the source, the created files removed); SM_ERROR_TIMEOUT. */
SmMigLibvirtResult *sm_migrate_libvirt (const SmMigLibvirtOptions *o,
                                        GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_MIGRATE_LIBVIRT_H */
