/* libsnapmig — interruption requests (SIGINT, SIGTERM, SIGHUP).
 *
 * The library installs no signal handler by itself: a program calls
 * sm_interrupt_install() (the CLI does, for every command), whose handlers
 * only record the signal.  Every wait in the library (QMP replies and
 * events, block-job polls, copy waits) checks sm_interrupted() and then
 * fails with SM_ERROR_INTERRUPTED, so that an executor leaves through its
 * ordinary error path: it resumes a guest it paused, journals the step as
 * failed and says where each disk runs.  The handlers are installed without
 * SA_RESTART, so a poll() blocked in the library returns at once (EINTR).
 */
#ifndef SM_INTERRUPT_H
#define SM_INTERRUPT_H

#include <stdbool.h>

#include "error.h"

/* Installs the recording handlers for SIGINT, SIGTERM and SIGHUP. */
void sm_interrupt_install (void);

/* Restores the default action of those signals (a forked worker). */
void sm_interrupt_uninstall (void);

/* Records SIG as an interruption request (async-signal-safe); what the
 * handlers call.  Also for tests and for programs with their own handlers. */
void sm_interrupt_request (int sig);

/* The signal an interruption was requested with, or 0. */
int sm_interrupted (void);

/* Forgets a request (tests; a program that handled it). */
void sm_interrupt_clear (void);

/* Sets a recorded request aside so that the few bounded commands of an
 * executor's unwinding (resume the guest, cancel a job, see where the disks
 * run) are still answered, and returns it (0: none); sm_interrupt_restore
 * records it again afterwards, unless a newer request came meanwhile:
 *   int sig = sm_interrupt_set_aside ();  ...  sm_interrupt_restore (sig); */
int sm_interrupt_set_aside (void);
void sm_interrupt_restore (int sig);

/* When an interruption was requested: sets ERROR to SM_ERROR_INTERRUPTED
 * ("interrupted by SIGINT") and returns true.  For the loops of waits:
 *   if (sm_interrupt_check (error)) return false; */
bool sm_interrupt_check (GError **error);

/* Runs FN (OPAQUE) with SIGINT, SIGTERM and SIGHUP blocked, so that a
 * signal cannot cut a short critical section in two (pivot's resume of the
 * guest); the signals are delivered after it.  Inside FN sm_interrupt_check
 * reports nothing, not even a request recorded before FN began: an error
 * path that runs after an interruption (resuming a guest it paused) can
 * still talk to QEMU.  Its QMP waits stay bounded by their timeouts (qmp.h).
 * The request is kept: the first check after FN reports it. */
void sm_interrupt_block_during (void (*fn) (void *opaque), void *opaque);

#endif /* SM_INTERRUPT_H */
