/* libsnapmig — what a running VM's disks look like: per disk the active
 * image, its backing chain as QEMU has it open, the block jobs running on it,
 * and whether the image headers on disk still describe the same chain.
 *
 * Built on the library's one VM view (sm_block_vm_query, lib/blockjob.h:
 * query-block, query-named-block-nodes, query-block-jobs); the on-disk
 * check reads headers with sm_image_chain_open.  Nothing is printed:
 * cli/cmd-disks.c formats the result, sm_disks_to_json gives the JSON form.
 */
#ifndef SM_DISKS_H
#define SM_DISKS_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-c/json.h>

#include "blockjob.h"
#include "error.h"
#include "qmp.h"
#include "vm-access.h"

/* One layer of a backing chain as QEMU has it open. */
typedef struct {
  char *file;              /* the layer's own file: QEMU's file name, or,
                              when QEMU names the layer "json:{...}", the
                              filename of its protocol child (relative to
                              QEMU's working directory when QEMU was given
                              a relative one) */
  char *qemu_file;         /* the name QEMU reports (may be "json:{...}") */
  char *format;            /* "qcow2", "raw", ... */
  char *node_name;         /* NULL unless exactly one node has this file and
                              format (query-named-block-nodes) */
  uint64_t virtual_size;
  char *backing_file;      /* the backing name this layer records, as
                              written (may be relative); NULL for the last */
} SmDiskLayer;

typedef struct {
  char *device;            /* drive id ("drive0"); "" for -blockdev disks */
  char *qdev;              /* guest device id or QOM path, NULL if none */
  bool inserted;           /* false for an empty drive: nothing below set */
  char *node_name;         /* the active layer's node name */
  char *format;            /* the active layer's driver */
  char *file;              /* the active image's file (never "json:{...}"
                              when QEMU names a file in it) */
  uint64_t virtual_size;
  bool read_only;
  GPtrArray *chain;        /* SmDiskLayer *, owned; [0] is the active layer */
  GPtrArray *jobs;         /* SmBlockJob *, owned: jobs whose id is this
                              disk's device or node name */
  bool chain_checked;      /* the on-disk headers were read and compared */
  GPtrArray *warnings;     /* char *, owned: on-disk headers that disagree
                              with QEMU's view, or why they could not be
                              read.  Empty when all is well. */
} SmDisk;

typedef struct {
  GPtrArray *disks;        /* SmDisk *, owned, in query-block order */
  GPtrArray *other_jobs;   /* SmBlockJob *, owned: jobs with an explicit
                              job-id, which QEMU does not tie to a disk */
} SmDiskList;

void sm_disk_list_free (SmDiskList *list);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmDiskList, sm_disk_list_free)

/* Queries the VM behind QMP (query-block, query-block-jobs, and
 * query-named-block-nodes when QEMU has it) and checks every file-based
 * chain against the image headers on disk.  A disagreement or an unreadable
 * header is a warning in the disk's entry, not an error: the VM's view is
 * still reported.  Relative file names are read relative to the current
 * directory.  Errors: the QMP errors of the queries.  Caller frees.
 */
SmDiskList *sm_disks_query (SmQmp *qmp, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The same through either way of reaching the VM (lib/vm-access.h): the
 * backend's view.  Errors name ACCESS's address. */
SmDiskList *sm_disks_query_access (SmVmAccess *access, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The list of view VM (its jobs move into the list's disks), each chain
 * checked against the image headers on disk.  Caller frees. */
SmDiskList *sm_disks_from_view (SmBlockVm *vm) G_GNUC_WARN_UNUSED_RESULT;

/* Returns the SmDisk whose device (or else node name) is NAME, or NULL.
 * Owned by LIST. */
const SmDisk *sm_disk_list_find (const SmDiskList *list, const char *name);

/* The JSON form printed by `snapmig disks --json`.  Keys are stable; absent
 * values are null, never missing:
 *
 *   { "disks": [ { "device": "drive0", "qdev": null | "ID",
 *                  "inserted": true, "node-name": "#block123" | null,
 *                  "format": "qcow2" | null, "file": "/x/top.qcow2" | null,
 *                  "virtual-size": 1073741824, "read-only": false,
 *                  "chain": [ { "file": ..., "format": ..., "node-name": ...,
 *                               "virtual-size": N, "backing-file": ... } ],
 *                  "jobs": [ JOB... ],
 *                  "chain-checked": true, "warnings": [ "..." ] } ],
 *     "other-jobs": [ JOB... ] }
 *
 *   JOB = { "id": "drive0", "type": "mirror", "status": "running",
 *           "len": N, "offset": N, "speed": N, "ready": false,
 *           "busy": false, "paused": false }
 *
 * "chain" is top (active) first.  Caller puts the object.
 */
json_object *sm_disks_to_json (const SmDiskList *list)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_DISKS_H */
