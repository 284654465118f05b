/* libsnapmig — the <domainsnapshot> document: model, parser (RelaxNG
 * validation, then meaning checks), formatter.
 *
 * The grammar (schemas/domainsnapshot.rng, embedded in the library) accepts
 * the documents libvirt accepts, plus snapmig's per-disk <mirror
 * file='...' format='...'/> from the oVirt live storage migration design.
 * Elements snapmig does not act on (<domain>, <inactiveDomain>, <cookie>,
 * <active>, seclabels, network hosts, ...) are kept as XML text so that a
 * document round-trips: parse -> format -> parse -> format gives the same
 * text twice, and no data is lost.
 *
 * Conflicts that need the VM to be seen (duplicate or unknown disk names)
 * are not refused here: like libvirt, the code applying a snapshot to a VM
 * does that.
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
/* "default", "no", "internal", "external", "manual"; NULL when out of
 * range.  Static strings. */
const char *sm_snapshot_location_to_string (SmSnapshotLocation loc);

typedef enum {
  SM_DISK_TYPE_DEFAULT,           /* attribute absent: file */
  SM_DISK_TYPE_FILE,
  SM_DISK_TYPE_BLOCK,
  SM_DISK_TYPE_NETWORK,
  SM_DISK_TYPE_LAST
} SmDiskType;
/* "default", "file", "block", "network"; NULL when out of range. */
const char *sm_disk_type_to_string (SmDiskType type);

/* One <disk> of <disks>.  Every string is owned by the disk (g_malloc). */
typedef struct {
  char *name;                     /* target ("vda") or source path */
  SmSnapshotLocation snapshot;
  SmDiskType type;
  char *source;                   /* file= or dev= (network: name=), or NULL */
  char *source_protocol;          /* network only */
  char *driver_type;              /* <driver type=...>, or NULL */
  char *mirror_file;              /* snapmig: <mirror file=...>, or NULL */
  char *mirror_format;            /* <mirror format=...>, or NULL */
  /* Children kept as XML text, each line indented for its place (8 spaces)
   * and ending in '\n', or NULL: */
  char *source_xml;               /* of <source>: seclabels, network hosts */
  char *driver_xml;               /* of <driver>: <metadata_cache> */
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
  GPtrArray *disks;               /* SmSnapshotDisk *, document order; owns */
  /* Other children of <domainsnapshot> (<domain>, <inactiveDomain>,
   * <cookie>, <active>, ...) in document order, as XML text indented by
   * 2 spaces, each line ending in '\n'; or NULL. */
  char *extra_xml;
} SmSnapshotDef;

/* An empty definition: no name, creation_time -1, no disks.  Caller frees
 * with sm_snapshot_def_free. */
SmSnapshotDef *sm_snapshot_def_new (void) G_GNUC_WARN_UNUSED_RESULT;
void sm_snapshot_def_free (SmSnapshotDef *def);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmSnapshotDef, sm_snapshot_def_free)

/* A disk named NAME (copied), everything else absent.  Add it to
 * def->disks, which then owns it, or free it with sm_snapshot_disk_free. */
SmSnapshotDisk *sm_snapshot_disk_new (const char *name)
  G_GNUC_WARN_UNUSED_RESULT;
void sm_snapshot_disk_free (SmSnapshotDisk *disk);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmSnapshotDisk, sm_snapshot_disk_free)

/* Whether DISK gets an external snapshot (a new top image): snapshot=
 * 'external', or no snapshot= but a new source or format given (libvirt
 * reads that as external). */
bool sm_snapshot_disk_is_external (const SmSnapshotDisk *disk);

/* Parses and validates a document.  SOURCE_NAME (a file name or
 * "<string>") begins every message.  Errors: SM_ERROR_XML for malformed or
 * schema-invalid documents and documents with a DOCTYPE (message names the
 * element or attribute and the line), SM_ERROR_INVALID for meaning errors
 * (see sm_snapshot_def_check).  Never prints; never reads anything but XML.
 * Caller frees.
 */
SmSnapshotDef *sm_snapshot_parse_string (const char *xml, const char *source_name,
                                         GError **error)
  G_GNUC_WARN_UNUSED_RESULT;
/* Same, for the file PATH.  SM_ERROR_NOT_FOUND / SM_ERROR_IO when the file
 * cannot be read, naming it. */
SmSnapshotDef *sm_snapshot_parse_file (const char *path, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The meaning checks a parsed document passes, for definitions built in
 * code too: a <mirror> only on an external disk, mirror and new source
 * paths absolute, mirror format raw or qcow2, memory file absolute,
 * creation time not negative other than -1.  SM_ERROR_INVALID, the message
 * beginning with SOURCE_NAME and naming the disk. */
bool sm_snapshot_def_check (const SmSnapshotDef *def, const char *source_name,
                            GError **error);

/* What in DEF asks for the VM's memory state, as the XML says it
 * ("<memory snapshot='external' file='/m.save'>", "<state>running</state>"),
 * or NULL: <memory snapshot='no'> and a <state> of disk-snapshot, shutoff or
 * nostate ask for none.  snapmig's snapshots are disk-only (create
 * --disk-only).  Caller frees. */
char *sm_snapshot_def_memory_request (const SmSnapshotDef *def)
  G_GNUC_WARN_UNUSED_RESULT;

/* Formats DEF as XML in libvirt's layout: two-space indent, attributes in
 * single quotes, the kept XML text inserted as it is.  Caller frees. */
char *sm_snapshot_format (const SmSnapshotDef *def) G_GNUC_WARN_UNUSED_RESULT;

/* Finds the first disk called NAME, or NULL.  Owned by DEF. */
SmSnapshotDisk *sm_snapshot_find_disk (const SmSnapshotDef *def,
                                       const char *name);

/* Validates any document snapmig knows, choosing the embedded schema by
 * the root element: <domainsnapshot> (then also the meaning checks) or a
 * libvirt migration cookie <qemu-migration>.  On success *KIND (if not
 * NULL) is set to the root element's name, a static string.  Errors as
 * sm_snapshot_parse_file; an unknown root element is SM_ERROR_XML naming
 * it.  For `snapmig check-xml`. */
bool sm_xml_validate_file (const char *path, const char **kind,
                           GError **error);

/* The schema machinery, for the library's other documents (the migration
 * cookie, lib/migrate-cookie.c).  Parses TEXT (LEN bytes) as
 * sm_snapshot_parse_string does (no DTD, no network, no entities),
 * requires the root element ROOT_NAME ("qemu-migration") and validates the
 * document against ROOT_NAME's embedded schema.  SM_ERROR_XML for a
 * malformed, foreign or invalid document, the message beginning with
 * SOURCE_NAME and naming the line.  Caller frees with xmlFreeDoc. */
struct _xmlDoc;
struct _xmlDoc *sm_xml_parse_validated (const char *text, size_t len,
                                        const char *root_name,
                                        const char *source_name,
                                        GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* Reading a validated document: whether NODE is the element NAME (no
 * namespace); NODE's attribute NAME (NULL when absent) and its text ("" when
 * none), g_malloc'ed copies the caller frees. */
struct _xmlNode;
bool sm_xml_is_element (const struct _xmlNode *node, const char *name);
char *sm_xml_get_attr (const struct _xmlNode *node, const char *name)
  G_GNUC_WARN_UNUSED_RESULT;
char *sm_xml_get_text (const struct _xmlNode *node) G_GNUC_WARN_UNUSED_RESULT;

/* Appends " NAME='VALUE'" to OUT, and TEXT as element content, escaped as
 * sm_snapshot_format escapes (libvirt's five entities; CR, and in
 * attributes newline and tab, as character references so that a parser
 * gives them back unchanged). */
void sm_xml_append_attr (GString *out, const char *name, const char *value);
void sm_xml_append_text (GString *out, const char *text);

#endif /* SM_SNAPSHOT_XML_H */
