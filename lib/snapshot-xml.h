/* libsnapmig — the <domainsnapshot> document: model, parser (RelaxNG
 * validation, then meaning checks), formatter.
 *
 * The grammar follows libvirt's domainsnapshot.rng (so every document libvirt
 * accepts is accepted) plus snapmig's per-disk <mirror file='...'
 * format='...'/> from the oVirt live storage migration design.  Elements
 * snapmig does not act on (<domain>, <inactiveDomain>, <cookie>, seclabels,
 * network hosts, ...) are kept verbatim so a document round-trips.
 */
#ifndef SM_SNAPSHOT_XML_H
#define SM_SNAPSHOT_XML_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "error.h"

typedef enum {
  SM_SNAPSHOT_LOCATION_DEFAULT,   /* attribute absent */
  SM_SNAPSHOT_LOCATION_NO,
  SM_SNAPSHOT_LOCATION_INTERNAL,
  SM_SNAPSHOT_LOCATION_EXTERNAL,
  SM_SNAPSHOT_LOCATION_MANUAL,
  SM_SNAPSHOT_LOCATION_LAST
} SmSnapshotLocation;
const char *sm_snapshot_location_to_string (SmSnapshotLocation loc);

typedef enum {
  SM_DISK_TYPE_DEFAULT,           /* attribute absent: file */
  SM_DISK_TYPE_FILE,
  SM_DISK_TYPE_BLOCK,
  SM_DISK_TYPE_NETWORK,
  SM_DISK_TYPE_LAST
} SmDiskType;
const char *sm_disk_type_to_string (SmDiskType type);

typedef struct {
  char *name;                     /* target ("vda") or source path */
  SmSnapshotLocation snapshot;
  SmDiskType type;
  char *source;                   /* file= or dev= (network: name=), or NULL */
  char *source_protocol;          /* network only */
  char *driver_type;              /* <driver type=...>, or NULL */
  char *mirror_file;              /* snapmig: <mirror file=...>, or NULL */
  char *mirror_format;            /* <mirror format=...>, or NULL */
  char *extra_xml;                /* children kept verbatim (seclabel, hosts) */
} SmSnapshotDisk;

typedef struct {
  char *name;
  char *description;
  char *state;                    /* "running", "disk-snapshot", ... or NULL */
  char *parent;                   /* parent snapshot name or NULL */
  int64_t creation_time;          /* seconds since the epoch; -1 if absent */
  char *memory_snapshot;          /* <memory snapshot=...> or NULL */
  char *memory_file;
  bool has_disks;                 /* a <disks> element was present */
  GPtrArray *disks;               /* SmSnapshotDisk *, document order */
  char *extra_xml;                /* top-level children kept verbatim */
} SmSnapshotDef;

void sm_snapshot_def_free (SmSnapshotDef *def);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmSnapshotDef, sm_snapshot_def_free)
SmSnapshotDef *sm_snapshot_def_new (void) G_GNUC_WARN_UNUSED_RESULT;
SmSnapshotDisk *sm_snapshot_disk_new (const char *name)
  G_GNUC_WARN_UNUSED_RESULT;

/* Parses and validates a document.  SOURCE_NAME (a file name or "<string>")
 * appears in messages.  Errors: SM_ERROR_XML for malformed or schema-invalid
 * documents (message names the element/attribute and line), SM_ERROR_INVALID
 * for meaning errors (mirror on a non-external disk, relative path where an
 * absolute one is required, ...), naming the disk.  Caller frees.
 */
SmSnapshotDef *sm_snapshot_parse_string (const char *xml, const char *source_name,
                                         GError **error)
  G_GNUC_WARN_UNUSED_RESULT;
SmSnapshotDef *sm_snapshot_parse_file (const char *path, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* Formats DEF as XML (libvirt's layout, two-space indent).  Caller frees. */
char *sm_snapshot_format (const SmSnapshotDef *def) G_GNUC_WARN_UNUSED_RESULT;

/* Finds a disk by name, or NULL. */
SmSnapshotDisk *sm_snapshot_find_disk (const SmSnapshotDef *def,
                                       const char *name);

/* Validates any document snapmig knows (<domainsnapshot>, a libvirt
 * migration cookie <qemu-migration>) by its root element against the
 * embedded schema.  For `snapmig check-xml`. */
bool sm_xml_validate_file (const char *path, GError **error);

#endif /* SM_SNAPSHOT_XML_H */
