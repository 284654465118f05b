/* libsnapmig — `snapmig validate`: checks storage domains (directory trees
 * of images) for broken, unsafe or left-over images, without writing
 * anything and without following a path outside the domains.
 *
 * Which files are images (documented in docs/snapmig.1, validate):
 *   - a regular file whose first bytes are the qcow2 magic is a qcow2 image;
 *   - a regular file named *.img *.raw *.qcow2 *.qcow *.disk *.iso without
 *     the magic is a raw image (*.qcow2 / *.qcow ones are also reported:
 *     they claim to be qcow2 and are not);
 *   - any other regular file is a raw image only when an image of a domain
 *     names it as its backing file (oVirt volumes have no extension);
 *   - a symbolic link inside a domain that leads to a block device is a
 *     block-device image (oVirt block domains name their LVs this way); a
 *     link leading to anything else outside the domains is not followed;
 *   - names starting with '.' are skipped;
 *   - FIFOs, sockets and character devices are ignored (never opened).
 *
 * A chain is an image that no other image uses as its backing file (its
 * top) and the images below it.  Backing names are resolved as QEMU does
 * (relative to the directory of the image naming them), first lexically:
 * a name whose lexical resolution leaves the domains is reported and never
 * touched; otherwise the real path of its directory (symlinks resolved,
 * cached per directory) must still be inside a domain.  The backing file
 * itself is then looked up in the table the directory walk built: nothing
 * is opened twice, and nothing outside the domains is opened except a
 * block device that a link inside a domain names.
 *
 * Leftovers: an image is used when a VM given has it open (any node, a
 * mirror's target included), a snapmig snapshot's metadata names it, a
 * move in progress lists it, or a used image has it below in its chain.
 * snapmig keeps the records of the files it creates in its state directory
 * (lib/lsm.h), never in a domain; only the files they list inside the
 * domains given matter:
 *   - STATE/vms/KEY/journal/OPID.created next to OPID.journal: an operation
 *     in flight or interrupted by a crash (a finished one's journal is
 *     deleted).  Each file is reported (warning) with the fix `snapmig
 *     recover --qmp ADDR` (ADDR from STATE/vms/KEY/vm) or removing it —
 *     not removable when a VM given has it open, or a move lists it;
 *   - STATE/vms/KEY/lsm/NAME.created: the files of move NAME, in progress
 *     until pivot or abort: in use, reported as such (info).
 * Other unused images are reported only when at least one VM was given
 * (info): without a VM, who opens what is unknown.
 *
 * Severities: an error is a broken or unsafe image (QEMU would fail, or
 * read a file it must not); a warning is a risk or waste that needs a
 * person (unstated backing format, absolute backing name, files an
 * interrupted snapmig operation left); an info is a fact worth knowing (an image in use
 * by a VM, the domain holding a VM disk's chain, an image nobody given
 * uses).
 */
#ifndef SM_VALIDATE_H
#define SM_VALIDATE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-c/json.h>

#include "blockjob.h"
#include "error.h"
#include "image.h"
#include "qmp.h"

typedef enum {
  SM_SEVERITY_INFO,
  SM_SEVERITY_WARNING,
  SM_SEVERITY_ERROR,
  SM_SEVERITY_LAST
} SmSeverity;

/* "info", "warning", "error"; NULL for an out-of-range value. */
const char *sm_severity_to_string (SmSeverity severity);

/* One problem or fact.  CODE is a stable identifier (listed in
 * lib/validate.c, table `finding_codes`), for scripts. */
typedef struct {
  SmSeverity severity;
  char *code;
  char *file;             /* the file concerned, or NULL */
  char *message;          /* names the file and what is wrong */
  char *fix;              /* what to do about it, or NULL */
  char *vm;               /* QMP address of the VM concerned, or NULL */
  char *disk;             /* the VM's disk, or NULL */
} SmFinding;

/* One image found in the domains. */
typedef struct {
  char *path;             /* as reached from the domain given */
  char *domain;           /* the domain (as given) that holds it */
  SmImageFormat format;   /* raw for a file without the qcow2 magic */
  bool is_block_device;
  uint64_t virtual_size;
  uint64_t file_size;
  char *backing_name;     /* as written in the header, or NULL */
  char *backing_format;   /* stated backing format, or NULL */
  char *backing_path;     /* the image it resolves to, or NULL (none,
                             missing, escaping) */
  bool header_ok;         /* the header parsed without an error finding */
  char *raw_by;           /* who states this image raw although it starts
                             with a qcow2 header (a guest wrote it): "VM
                             ADDR (disk D)" or "image PATH"; NULL otherwise */
  GPtrArray *used_by;     /* char *: "image PATH", "vm SOCK DISK",
                             "snapshot VMKEY/NAME", "move VMKEY/NAME",
                             "operation JOURNAL" */
} SmValidateImage;

/* A chain, top first. */
typedef struct {
  char *top;
  GPtrArray *layers;      /* char * paths, index 0 = top */
  bool complete;          /* every layer resolved, no header error, no
                             escape, no cycle */
} SmValidateChain;

/* One disk of one VM given with --qmp. */
typedef struct {
  char *vm;               /* QMP address */
  char *disk;             /* device name, or the qdev id with -blockdev */
  GPtrArray *layers;      /* char *: QEMU's file names, top first */
  char *domain;           /* the domain holding the complete chain, or NULL */
  char *problem;          /* why no domain does (NULL when one does) */
} SmValidateDisk;

/* What QEMU has open for one disk (from query-block), for
 * sm_validate_run.  Build with sm_validate_vm_query. */
typedef struct {
  char *disk;
  GPtrArray *layers;      /* char *: file names, top first */
  GPtrArray *formats;     /* char *: driver per layer */
  uint64_t virtual_size;
  bool read_only;
} SmValidateVmDisk;

/* A file QEMU has open outside every disk's chain (a mirror's target). */
typedef struct {
  char *file;
  char *node_name;
  bool read_only;
} SmValidateVmNode;

typedef struct {
  char *address;          /* QMP address, as given */
  GPtrArray *disks;       /* SmValidateVmDisk * */
  GPtrArray *nodes;       /* SmValidateVmNode *: every file-protocol node
                             (query-named-block-nodes), chains included */
} SmValidateVm;

void sm_validate_vm_free (SmValidateVm *vm);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmValidateVm, sm_validate_vm_free)

/* Asks QEMU which files each disk has open, top first, with the format
 * QEMU opened each with (query-block), and which files any node has open
 * (query-named-block-nodes, when QEMU has it: a running mirror's target is
 * open for writing but in no disk's chain): sm_block_vm_query, then
 * sm_validate_vm_from_block.  A layer QEMU names "json:{...}" is reduced to
 * its "file" node's file name.  Disks with no medium are skipped.  ADDRESS
 * is stored for messages.  Caller frees.  Errors: the QMP error, naming the
 * VM.  A layer QEMU opened as raw is raw for sm_validate_run, whatever its
 * first bytes hold (a guest may write a qcow2 header into its raw disk).
 */
SmValidateVm *sm_validate_vm_query (SmQmp *qmp, const char *address,
                                    GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* The same from a view already queried (pure; for tests and callers that
 * hold a view).  Caller frees. */
SmValidateVm *sm_validate_vm_from_block (const SmBlockVm *vm,
                                         const char *address)
  G_GNUC_WARN_UNUSED_RESULT;

typedef struct {
  const char *const *domains;      /* NULL-terminated, at least one */
  SmValidateVm *const *vms;        /* N_VMS VMs (not consumed), or NULL */
  size_t n_vms;
  const char *state_dir;           /* snapmig state (snapshot metadata,
                                      journals, moves); NULL or absent:
                                      none */
} SmValidateOptions;

typedef struct {
  GPtrArray *domains;     /* char *, as given */
  GPtrArray *images;      /* SmValidateImage *, sorted by path */
  GPtrArray *chains;      /* SmValidateChain *, sorted by top */
  GPtrArray *disks;       /* SmValidateDisk *, in VM then disk order */
  GPtrArray *findings;    /* SmFinding *: errors, warnings, infos; each
                             group sorted by file then code */
  unsigned n_errors, n_warnings, n_infos;
  bool vms_given;         /* leftover images were looked for */
} SmValidateReport;

void sm_validate_report_free (SmValidateReport *report);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmValidateReport, sm_validate_report_free)

/* Walks every domain once and checks every image and chain (see the top of
 * this file).  Opens files read-only, writes nothing.  Returns the report
 * (caller frees), or NULL with error when validation cannot run: a domain
 * that does not exist or is not a directory (SM_ERROR_NOT_FOUND /
 * SM_ERROR_INVALID, naming it).  Problems found in the domains are
 * findings, not errors.
 */
SmValidateReport *sm_validate_run (const SmValidateOptions *opts,
                                   GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* True when the report has no errors (and, with STRICT, no warnings). */
bool sm_validate_report_clean (const SmValidateReport *report, bool strict);

/* The report as JSON (keys documented in cli/cmd-validate.c and
 * docs/snapmig.1).  Caller puts. */
json_object *sm_validate_report_to_json (const SmValidateReport *report,
                                         bool strict)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_VALIDATE_H */
