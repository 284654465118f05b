/* snapmig.h — libsnapmig's public C API (issue 13).
 *
 * Move the disks of a running QEMU VM between storage domains without
 * stopping it, from a program: list a VM's disks, take the mirrored
 * snapshot that starts a move (create), watch it (status, progress
 * callbacks), finish it (pivot) or undo it (abort), and check a storage
 * domain (validate).  The same operations as the snapmig(1) commands of the
 * same names, with the same plans, journal and state directory: a move
 * started through the library can be watched, pivoted or recovered with the
 * command and the other way round.
 *
 * Conventions
 *   - Every object is opaque; functions that can fail take
 *     `snapmig_error **error` last (may be NULL) and say failure by their
 *     return value (-1 or NULL).  The error's code is the JSON contract's
 *     stable code (snapmig-json(7)): SNAPMIG_ERR_NOT_FOUND is "not-found".
 *   - Strings returned as `char *` are the caller's, freed with free();
 *     `const char *` ones live as long as the object they came from.
 *   - JSON texts (snapmig_*_json) are the documents `snapmig CMD --json`
 *     prints, valid against schemas/snapmig.schema.json.
 *   - The library never exits or prints; it forks only to exec (QEMU's
 *     tools, and the lower layers' copy worker: the installed `snapmig`
 *     binary, see snapmig_set_helper).  It installs no signal handler:
 *     snapmig_interrupt() asks a running operation to stop the way SIGINT
 *     stops the command (a create is rolled back).
 *   - A snapmig_vm holds no connection: each call connects to the VM's QMP
 *     monitor, works and disconnects, so that other programs (snapmig status)
 *     can reach the VM between calls.  Calls on one snapmig_vm are not
 *     thread-safe; different snapmig_vm objects may be used from different
 *     threads.
 *
 * Link with `pkg-config --cflags --libs snapmig`.  Versioned symbols
 * (SNAPMIG_0.2): additions keep the soname, removals change it.
 */
#ifndef SNAPMIG_H
#define SNAPMIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SM_VERSION_MAJOR 0
#define SM_VERSION_MINOR 2
#define SM_VERSION_MICRO 0
#define SM_VERSION "0.2.0"
/* True when the headers are at least MAJOR.MINOR.MICRO. */
#define SM_CHECK_VERSION(major, minor, micro)                              \
  (SM_VERSION_MAJOR > (major) ||                                           \
   (SM_VERSION_MAJOR == (major) && SM_VERSION_MINOR > (minor)) ||          \
   (SM_VERSION_MAJOR == (major) && SM_VERSION_MINOR == (minor) &&          \
    SM_VERSION_MICRO >= (micro)))

/* The version of the library loaded at run time ("0.2.0"). */
const char *snapmig_version (void);

/* ---- errors ------------------------------------------------------------ */

/* One per failure class; the names are the JSON contract's codes. */
typedef enum {
  SNAPMIG_OK = 0,
  SNAPMIG_ERR_FAILED,          /* "failed": anything not listed below */
  SNAPMIG_ERR_INVALID_INPUT,   /* "invalid-input": arguments, options */
  SNAPMIG_ERR_INVALID_XML,     /* "invalid-xml": malformed or invalid XML */
  SNAPMIG_ERR_IO,              /* "io": a system call failed */
  SNAPMIG_ERR_NOT_FOUND,       /* "not-found": file, disk, snapshot, VM */
  SNAPMIG_ERR_EXISTS,          /* "exists": a target exists */
  SNAPMIG_ERR_IMAGE,           /* "image": a malformed image header */
  SNAPMIG_ERR_UNSAFE,          /* "unsafe": a chain escapes its domain */
  SNAPMIG_ERR_QEMU_ERROR,      /* "qemu-error": QEMU refused a command */
  SNAPMIG_ERR_QEMU_PROTOCOL,   /* "qemu-protocol": a reply not understood */
  SNAPMIG_ERR_DISCONNECTED,    /* "disconnected": QEMU or the link is gone */
  SNAPMIG_ERR_TIMEOUT,         /* "timeout" */
  SNAPMIG_ERR_UNSUPPORTED,     /* "unsupported": QEMU lacks what is needed */
  SNAPMIG_ERR_BUSY,            /* "busy": another snapmig or job holds it */
  SNAPMIG_ERR_INTERRUPTED,     /* "interrupted": snapmig_interrupt, signal */
  SNAPMIG_ERR_IN_USE,          /* "in-use": another process holds a file */
  SNAPMIG_ERR_NO_SPACE,        /* "no-space": a domain has no room */
  SNAPMIG_ERR_LAST
} snapmig_code;

typedef struct snapmig_error snapmig_error;

snapmig_code snapmig_error_code (const snapmig_error *error);
/* The code's JSON name ("not-found"). */
const char *snapmig_error_code_name (const snapmig_error *error);
/* What failed and what to do, naming the object (disk, file, snapshot). */
const char *snapmig_error_message (const snapmig_error *error);
/* The object the error concerns (a file, disk, snapshot or socket), or
 * NULL when none is known. */
const char *snapmig_error_object (const snapmig_error *error);
void snapmig_error_free (snapmig_error *error);
/* A code's JSON name; NULL for a value out of range. */
const char *snapmig_code_name (snapmig_code code);

/* ---- process-wide settings -------------------------------------------- */

/* Debug messages (what SNAPMIG_DEBUG / --debug prints); NULL: none. */
typedef void (*snapmig_log_fn) (const char *domain, const char *message,
                                void *opaque);
void snapmig_set_log_handler (snapmig_log_fn fn, void *opaque);

/* The snapmig binary the library execs for the lower layers' copy worker
 * (`snapmig copy-worker`; NULL: back to the default).  Default:
 * $SNAPMIG_HELPER if set, else the one installed beside the library
 * (BINDIR/snapmig of the same `make install`), else snapmig from PATH. */
void snapmig_set_helper (const char *path);

/* Asks the operation running in any thread to stop as SIGINT stops the
 * command: it rolls back what it did and fails with SNAPMIG_ERR_INTERRUPTED.
 * Async-signal-safe: may be called from a signal handler. */
void snapmig_interrupt (void);

/* ---- a VM --------------------------------------------------------------- */

typedef struct snapmig_vm snapmig_vm;

/* A VM reached through its QMP monitor QMP_SOCKET (a socket path,
 * "unix:PATH", or HOST:PORT as the command's --qmp).  STATE_DIR: snapmig's
 * state directory (NULL: the command's default, /var/lib/snapmig for root,
 * else $XDG_STATE_HOME/snapmig).  TIMEOUT_S bounds each
 * wait for QEMU and for progress (0: replies are bounded by the library's
 * default, waits for progress are not).  Does not connect; fails only on
 * bad arguments. */
snapmig_vm *snapmig_vm_new (const char *qmp_socket, const char *state_dir,
                            int timeout_s, snapmig_error **error);
void snapmig_vm_free (snapmig_vm *vm);

/* ---- disks -------------------------------------------------------------- */

typedef struct snapmig_disks snapmig_disks;

/* The VM's disks: each with its chain, top first (`snapmig disks`). */
snapmig_disks *snapmig_disks_query (snapmig_vm *vm, snapmig_error **error);
void snapmig_disks_free (snapmig_disks *disks);

size_t snapmig_disks_count (const snapmig_disks *disks);
/* Disk I (0-based): its name (drive id, or the guest device's id for a
 * -blockdev disk), the active layer's file (absolute; never "json:{...}"),
 * its format, virtual size in bytes.  NULL / 0 for I out of range. */
const char *snapmig_disk_name (const snapmig_disks *disks, size_t i);
const char *snapmig_disk_file (const snapmig_disks *disks, size_t i);
const char *snapmig_disk_format (const snapmig_disks *disks, size_t i);
uint64_t snapmig_disk_virtual_size (const snapmig_disks *disks, size_t i);
/* The layers of disk I, top (0) to base. */
size_t snapmig_disk_chain_length (const snapmig_disks *disks, size_t i);
const char *snapmig_disk_layer_file (const snapmig_disks *disks, size_t i,
                                     size_t layer);
const char *snapmig_disk_layer_format (const snapmig_disks *disks, size_t i,
                                       size_t layer);
/* The document `snapmig disks --json` prints. */
char *snapmig_disks_json (const snapmig_disks *disks);

/* ---- progress ------------------------------------------------------------ */

/* Progress of a long wait.  KIND is "mirror" (NAME a disk) or "copy" (NAME
 * a lower layer's file name, without its directory: the same name in both
 * domains; snapmig_status_json has the absolute paths); DONE/TOTAL in bytes (TOTAL may grow
 * while a mirror runs); FINISHED once the item is ready (mirror) or copied.
 * Called from the thread that runs the operation, only when a number
 * changed. */
typedef void (*snapmig_progress_fn) (const char *kind, const char *name,
                                     uint64_t done, uint64_t total,
                                     bool finished, void *opaque);

/* ---- create: the mirrored snapshot that starts a move ------------------- */

typedef struct snapmig_create_options snapmig_create_options;

/* Options of `snapmig create --name NAME`. */
snapmig_create_options *snapmig_create_options_new (const char *name);
void snapmig_create_options_free (snapmig_create_options *options);
/* --mirror-domain DIR: every disk's chain is pre-created in DIR and its new
 * top mirrored there. */
int snapmig_create_options_set_mirror_domain (snapmig_create_options *options,
                                              const char *dir,
                                              snapmig_error **error);
/* --diskspec SPEC ("vda,file=PATH,mirror=PATH", as the command); may be
 * called once per disk. */
int snapmig_create_options_add_diskspec (snapmig_create_options *options,
                                         const char *spec,
                                         snapmig_error **error);
/* A <domainsnapshot> document (text) in place of the name and specs. */
int snapmig_create_options_set_xml (snapmig_create_options *options,
                                    const char *xml, snapmig_error **error);
/* --bandwidth: the mirrors' speed in bytes per second (0: unlimited). */
void snapmig_create_options_set_bandwidth (snapmig_create_options *options,
                                           uint64_t bytes_per_second);
/* --wait: return once every mirror is ready and every lower layer copied
 * (progress reported); an interrupt during the wait rolls the create back. */
void snapmig_create_options_set_wait (snapmig_create_options *options,
                                      bool wait);

/* Takes the snapshot and starts the mirrors and copies (`snapmig create`).
 * PROGRESS (may be NULL) is called during the wait of set_wait.  On failure
 * the VM and every file are as before. */
int snapmig_create (snapmig_vm *vm, const snapmig_create_options *options,
                    snapmig_progress_fn progress, void *opaque,
                    snapmig_error **error);

/* ---- watch, finish, undo ------------------------------------------------- */

/* The document `snapmig status --json [SNAPSHOT]` prints (SNAPSHOT NULL:
 * the current one).  Reads the state directory when another snapmig holds
 * the VM's monitor. */
char *snapmig_status_json (snapmig_vm *vm, const char *snapshot,
                           snapmig_error **error);

/* Waits until the move SNAPSHOT is ready (every mirror ready, every copy
 * done), reporting PROGRESS; `snapmig status --wait`-like. */
int snapmig_wait (snapmig_vm *vm, const char *snapshot,
                  snapmig_progress_fn progress, void *opaque,
                  snapmig_error **error);

typedef enum {
  SNAPMIG_PIVOT_DELETE_SOURCE = 1 << 0,  /* --delete-source */
} snapmig_pivot_flags;

typedef struct snapmig_pivot_result snapmig_pivot_result;

/* Waits for the move to be ready (PROGRESS), then switches every disk to
 * its destination (`snapmig pivot`).  *RESULT (may be NULL) gets what was
 * done. */
int snapmig_pivot (snapmig_vm *vm, const char *snapshot, unsigned flags,
                   snapmig_progress_fn progress, void *opaque,
                   snapmig_pivot_result **result, snapmig_error **error);
/* How long the guest was paused, in microseconds; -1 when it was not. */
int64_t snapmig_pivot_result_pause_us (const snapmig_pivot_result *result);
size_t snapmig_pivot_result_moved_count (const snapmig_pivot_result *result);
const char *snapmig_pivot_result_moved (const snapmig_pivot_result *result,
                                        size_t i);
/* With SNAPMIG_PIVOT_DELETE_SOURCE: the source files removed. */
size_t snapmig_pivot_result_removed_count (const snapmig_pivot_result *result);
const char *snapmig_pivot_result_removed (const snapmig_pivot_result *result,
                                          size_t i);
void snapmig_pivot_result_free (snapmig_pivot_result *result);

/* Cancels the move SNAPSHOT (`snapmig abort`): the VM stays on its source
 * chain and the files snapmig created are removed. */
int snapmig_abort (snapmig_vm *vm, const char *snapshot,
                   snapmig_error **error);

/* ---- validate ------------------------------------------------------------- */

typedef enum {
  SNAPMIG_VALIDATE_STRICT = 1 << 0,      /* --strict: warnings count */
} snapmig_validate_flags;

/* Checks the storage domains DOMAINS (NULL-terminated, at least one) and,
 * with VMS (NULL-terminated snapmig_vm pointers, or NULL), which chains
 * those VMs run on (`snapmig validate`).  Returns 1 when the domains are
 * consistent, 0 when problems were found, -1 when validate could not run.
 * *REPORT (may be NULL) gets the document `snapmig validate --json`
 * prints. */
int snapmig_validate (const char *const *domains, snapmig_vm *const *vms,
                      unsigned flags, char **report, snapmig_error **error);

#ifdef __cplusplus
}
#endif

#endif /* SNAPMIG_H */
