/* tests/harness — helpers shared by the C tests and tools: private temporary
 * directories, guest-less QEMU VMs started as real processes, images made
 * with qemu-img, and guest-visible data checks through qemu-io.
 *
 * Every helper reports a failure by returning NULL/false after printing the
 * reason as a TAP comment ("# ...") on stderr, so a test writes
 *   g_assert_true (sm_test_guest_write (vm, "drive0", 0x22, 1 << 20, 1 << 20));
 * and the log says what went wrong.
 *
 * Processes: a VM is a child of the test process started with fork/exec; the
 * child sets PR_SET_PDEATHSIG=SIGKILL, so QEMU dies with the test on every
 * exit path (a failed g_assert included).  Helpers kill exactly that PID.
 * The death signal follows the *thread* that started QEMU: start VMs from
 * the main thread (or one that outlives them).
 */
#ifndef SM_TEST_HARNESS_H
#define SM_TEST_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#include "error.h"

/* Forward declaration (lib/qmp.h): including qmp.h here would force its
 * json-c cleanup definitions on every test.  C11 allows the repeat. */
typedef struct SmQmp SmQmp;

/* Creates a new private directory under $TMPDIR (or /tmp), removed with its
 * contents when the process exits (normal exit, or a failed assertion's
 * abort, best effort).  Returns the path; caller frees the string only.
 * Aborts the test if the directory cannot be made.
 */
char *sm_test_tmpdir (void) G_GNUC_WARN_UNUSED_RESULT;

/* The source tree the test program runs from: two levels above it (or
 * above G_TEST_SRCDIR, which names tests/unit when set), canonical.  Aborts
 * when PROBE, a file of the tree ("lib/snapshot-xml.h"), is not there.
 * With SHARED not NULL, *SHARED is TREE/../shared (libvirt's corpus),
 * canonical, or NULL when absent.  Call after g_test_init.  Caller frees
 * both strings. */
char *sm_test_source_tree (const char *probe, char **shared)
  G_GNUC_WARN_UNUSED_RESULT;

/* Runs ARGV (argv[0] looked up in PATH) and waits for it.  With OUTPUT
 * non-NULL, stdout+stderr are returned there (caller frees).  Returns true
 * when it exited 0; otherwise prints the command and its output as TAP
 * comments unless QUIET.
 */
bool sm_test_run (const char *const *argv, char **output, bool quiet);

/* `qemu-img ARGS...` (NULL-terminated), e.g.
 *   sm_test_qemu_img ("create", "-f", "qcow2", path, "64M", NULL).
 * True when it exited 0; prints its output otherwise.
 */
bool sm_test_qemu_img (const char *first_arg, ...) G_GNUC_NULL_TERMINATED;

/* Creates a raw image of SIZE bytes. */
bool sm_test_create_raw (const char *path, uint64_t size);

/* Creates a qcow2 image.  BACKING (may be NULL) is written into the header as
 * given — pass a name relative to PATH's directory to get a relative chain —
 * with BACKING_FMT stated (-F; required when BACKING is set).  SIZE 0 with a
 * backing file takes the backing file's size.
 */
bool sm_test_create_qcow2 (const char *path, uint64_t size,
                           const char *backing, const char *backing_fmt);

/* Checks offline, with `qemu-io -r -f FMT -c 'read -P PATTERN OFF LEN' IMG`,
 * that the guest-visible bytes of IMG (through its backing chain) hold
 * PATTERN.  Do not call it on an image a running VM has open for writing.
 */
bool sm_test_image_read_pattern (const char *img, const char *fmt,
                                 unsigned pattern, uint64_t offset,
                                 uint64_t len);

/* A free TCP port on 127.0.0.1 (bound and released; racy only against other
 * programs picking the same port in between). 0 on failure. */
int sm_test_free_port (void);

/* Attaches a free loop device over FILE (read-write), standing in for a
 * block device such as an oVirt LV.  It is attached with
 * LO_FLAGS_AUTOCLEAR: the kernel detaches it when its last descriptor is
 * closed, the returned one included, so nothing stays attached when the
 * test closes it or dies (a failed assertion too).  Returns that descriptor
 * (caller closes) and sets *DEV to the node, "/dev/loopN" (caller frees).
 * Returns -1 with *DEV NULL, the reason printed, when loop devices cannot be
 * used here (none, no permission, a kernel without LOOP_CONFIGURE): the
 * caller skips with g_test_skip.
 */
int sm_test_loop_attach (const char *file, char **dev)
  G_GNUC_WARN_UNUSED_RESULT;

/* A guest-less VM: qemu-system-x86_64 -M none -nodefaults -display none
 * -qmp unix:DIR/NAME.qmp,server=on,wait=off (or tcp:127.0.0.1:PORT)
 * -drive ... ; QEMU's stdout/stderr go to DIR/NAME.log.
 */
typedef struct SmTestVm SmTestVm;

typedef struct {
  const char *dir;                 /* required: where the socket/log go */
  const char *name;                /* required: socket DIR/NAME.qmp */
  const char *const *drives;       /* NULL-terminated -drive values, or NULL */
  const char *const *extra_args;   /* NULL-terminated extra QEMU arguments
                                      (e.g. "-incoming", "defer"), or NULL */
  int tcp_port;                    /* > 0: QMP on tcp:127.0.0.1:PORT instead
                                      of the unix socket */
  bool no_connect;                 /* do not open an SmQmp (the test connects
                                      itself, e.g. to test sm_qmp_connect) */
  int timeout_ms;                  /* start + connect deadline; 0 = 20000 */
} SmTestVmOptions;

/* Starts QEMU, waits (polling with a deadline, no fixed sleep) until its
 * monitor accepts a connection and connects an SmQmp to it.  Returns NULL
 * (with QEMU's log printed) if QEMU exits or the deadline passes.  Free with
 * sm_test_vm_free.
 */
SmTestVm *sm_test_vm_start_full (const SmTestVmOptions *opts)
  G_GNUC_WARN_UNUSED_RESULT;

/* sm_test_vm_start_full with only dir, name and drives set. */
SmTestVm *sm_test_vm_start (const char *dir, const char *name,
                            const char *const *drive_opts)
  G_GNUC_WARN_UNUSED_RESULT;

/* The VM's connection (owned by the VM; NULL with no_connect). */
SmQmp *sm_test_vm_qmp (SmTestVm *vm);
/* The QMP address: the socket path, or "127.0.0.1:PORT". Owned by the VM. */
const char *sm_test_vm_socket (const SmTestVm *vm);
/* QEMU's PID, or 0 once killed. */
pid_t sm_test_vm_pid (const SmTestVm *vm);
/* Path of QEMU's log file (owned by the VM). */
const char *sm_test_vm_log (const SmTestVm *vm);

/* SIGKILLs QEMU and reaps it (waitpid).  The SmQmp stays open so that a test
 * can check what the library does when QEMU has died.  Idempotent.
 */
void sm_test_vm_kill (SmTestVm *vm);

/* Kills QEMU if still running, closes the connection, frees. NULL is fine. */
void sm_test_vm_free (SmTestVm *vm);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmTestVm, sm_test_vm_free)

/* Runs HMP `qemu-io DRIVE "write -P PATTERN OFFSET LEN"` in the VM: bytes
 * written through the device exactly as a guest would (mirrors see them).
 * False (output printed) if qemu-io reports a failure (see sm_test_hmp).
 */
bool sm_test_guest_write (SmTestVm *vm, const char *drive, unsigned pattern,
                          uint64_t offset, uint64_t len);

/* Same with "read -P": true when the guest sees PATTERN there. */
bool sm_test_guest_read (SmTestVm *vm, const char *drive, unsigned pattern,
                         uint64_t offset, uint64_t len);

/* True if TEXT, output of HMP qemu-io, reports a failure ("Pattern
 * verification failed", "Error: ...", "write failed: ...", "not found").
 */
bool sm_test_hmp_output_failed (const char *text);

/* Runs the HMP COMMAND_LINE on QMP and judges its output: a reply starting
 * with "Error" fails any command; qemu-io commands are judged further, as
 * other commands' text cannot be read reliably.  QEMU 7.2's HMP
 * qemu-io prints its result ("read N/N bytes", "Pattern verification
 * failed", "write failed: ...") on QEMU's stdout, not in the HMP reply; only
 * errors such as an unknown drive come back in the reply.  So LOG, the file
 * QEMU's stdout goes to (may be NULL), is scanned for what the command
 * added.  Returns false when the reply or those log lines report a failure,
 * or when a qemu-io read/write did not confirm it ran ("read "/"wrote " in
 * LOG; only checked with LOG).  OUTPUT (may be NULL) receives the reply
 * followed by the new log lines; caller frees.  Failures are not printed.
 */
bool sm_test_hmp (SmQmp *qmp, const char *log, const char *command_line,
                  char **output);

/* The log next to a socket by the lib.sh / harness convention: DIR/NAME.qmp
 * -> DIR/NAME.log, or NULL when ADDRESS does not end in ".qmp" or the file
 * does not exist.  Caller frees.
 */
char *sm_test_log_for_socket (const char *address) G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_TEST_HARNESS_H */
