/* libsnapmig — what the public API's files (lib/api-*.c) share: the
 * conversion of a GError into a snapmig_error, and a VM's target. */
#ifndef SM_API_PRIVATE_H
#define SM_API_PRIVATE_H

#include <glib.h>

#include "snapmig.h"
#include "ops.h"

struct snapmig_vm {
  char *address;
  char *state_dir;             /* NULL: the default */
  int timeout_s;               /* 0: default replies, unbounded waits */
};

/* Sets *ERROR (when ERROR is not NULL) from ERR, which it consumes. */
void sm_api_error_set (snapmig_error **error, GError *err);

/* Sets *ERROR to SNAPMIG_ERR_INVALID_INPUT naming what is wrong. */
void sm_api_error_invalid (snapmig_error **error, const char *fmt, ...)
  G_GNUC_PRINTF (2, 3);

/* The operation target of VM. */
SmOpTarget sm_api_target (const snapmig_vm *vm);

/* Ends an operation of the API: a request of snapmig_interrupt was for
 * it, not for the next one. */
void sm_api_op_end (void);

/* The end of an operation that returns 0 or -1: sm_api_op_end, then 0 when
 * OK, else -1 with *ERROR set from ERR (consumed). */
int sm_api_op_return (bool ok, GError *err, snapmig_error **error);

/* A JSON document as the command prints it: PRETTY (indented) or one
 * line.  Caller frees with free(). */
char *sm_api_json_text (json_object *doc, bool pretty);

#endif /* SM_API_PRIVATE_H */
