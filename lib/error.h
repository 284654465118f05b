/* libsnapmig — errors and debug logging shared by every module.
 *
 * Every fallible function takes GError **error as its last parameter and still
 * says failure through its return value (false / NULL / -1), as QEMU's block
 * layer and libvirt do.  Messages name the object they concern (disk, file,
 * snapshot, socket) so that the CLI can print them unchanged.
 */
#ifndef SM_ERROR_H
#define SM_ERROR_H

#include <stdbool.h>
#include <glib.h>

/* An extended GError domain (GLib 2.68): each SM_ERROR carries, besides
 * code and message, the object it concerns (sm_error_set_object), which
 * the JSON contract reports as the error's "object" (snapmig-json(7)).
 * g_error_copy and g_propagate_prefixed_error keep it. */
#define SM_ERROR (sm_error_quark ())
GQuark sm_error_quark (void);

typedef enum {
  SM_ERROR_FAILED,            /* anything not listed below */
  SM_ERROR_INVALID,           /* bad input: arguments, XML meaning, options */
  SM_ERROR_XML,               /* malformed or schema-invalid XML */
  SM_ERROR_IO,                /* a system call on a file or socket failed */
  SM_ERROR_NOT_FOUND,         /* a file, disk, node or snapshot does not exist */
  SM_ERROR_EXISTS,            /* a target exists and reuse was not asked for */
  SM_ERROR_IMAGE,             /* an image header is malformed or unsupported */
  SM_ERROR_UNSAFE,            /* a backing file escapes its storage domain, ... */
  SM_ERROR_QMP,               /* QEMU answered a command with an error */
  SM_ERROR_QMP_PROTOCOL,      /* QEMU's reply could not be understood */
  SM_ERROR_DISCONNECTED,      /* the QMP peer went away (QEMU died) */
  SM_ERROR_TIMEOUT,           /* a deadline passed */
  SM_ERROR_UNSUPPORTED,       /* the QEMU we talk to lacks a needed command */
  SM_ERROR_BUSY,              /* another snapmig holds the lock, a job runs */
  SM_ERROR_INTERRUPTED,       /* SIGINT, SIGTERM or SIGHUP (interrupt.h) */
  SM_ERROR_IN_USE,            /* another process holds a file (QEMU's image
                                 locks) or another VM uses it */
  SM_ERROR_NO_SPACE,          /* a storage domain has no room for the data */
  SM_ERROR_LAST
} SmErrorCode;

/* Debug logging.  The library never prints by itself: a program installs a
 * handler (the CLI's --debug writes to stderr).  With no handler, sm_debug
 * costs one pointer test.
 */
typedef void (*SmDebugHandler) (const char *domain, const char *message,
                                void *opaque);
void sm_debug_set_handler (SmDebugHandler handler, void *opaque);
bool sm_debug_enabled (void);
void sm_debug (const char *domain, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

/* The stable name of ERR's code in JSON output ("not-found", "timeout",
 * "no-space", ...; "failed" for an error of another domain), and back
 * (SM_ERROR_FAILED for a name it does not know). */
const char *sm_error_code_name (const GError *err);
int sm_error_code_from_name (const char *name);

/* The object ERR concerns: an absolute file or directory path, a disk's
 * name, a snapshot's name, a QMP socket or a domain.  Replaces any earlier
 * one; NULL clears it.  No-op for an error of another domain or NULL. */
void sm_error_set_object (GError *err, const char *object);
/* ERR's object, or NULL (none set, or not an SM_ERROR).  Owned by ERR. */
const char *sm_error_get_object (const GError *err);

/* g_set_error with the object set too. */
void sm_error_set_with_object (GError **error, SmErrorCode code,
                               const char *object, const char *fmt, ...)
  G_GNUC_PRINTF (4, 5);

/* The process exit status for ERR, from the one table in error.c
 * (docs/snapmig.1, EXIT STATUS; snapmig-json(7)): 0 for NULL, 1 failed and
 * any code not listed, 2 bad input, 3 not found, 4 busy or in use,
 * 5 timeout, 6 disconnected, 7 QEMU refused or lacks a command,
 * 8 no space, 130 interrupted. */
enum {
  SM_EXIT_STATUS_OK = 0,
  SM_EXIT_STATUS_FAILED = 1,
  SM_EXIT_STATUS_USAGE = 2,        /* usage, invalid-input, invalid-xml */
  SM_EXIT_STATUS_NOT_FOUND = 3,
  SM_EXIT_STATUS_BUSY = 4,         /* busy, in-use */
  SM_EXIT_STATUS_TIMEOUT = 5,
  SM_EXIT_STATUS_DISCONNECTED = 6,
  SM_EXIT_STATUS_QEMU = 7,         /* qemu-error, qemu-protocol, unsupported */
  SM_EXIT_STATUS_NO_SPACE = 8,
  SM_EXIT_STATUS_INTERRUPTED = 130,
};
int sm_error_exit_status (const GError *err);
/* The same for a code name ("usage" included); 1 for a name not known. */
int sm_error_exit_status_for_name (const char *name);

#endif /* SM_ERROR_H */
