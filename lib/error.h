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

#endif /* SM_ERROR_H */
