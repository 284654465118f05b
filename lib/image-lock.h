/* libsnapmig — who else uses an image: QEMU's image locks and the processes
 * holding a file.
 *
 * QEMU (file-posix, 2.10 on; checked on 7.2) takes open-file-description
 * byte-range locks (F_OFD_SETLK) on every image it opens: a shared lock on
 * byte 100+P for each permission P it takes and on 200+P for each one it
 * does not share (P: 0 consistent read, 1 write, 2 write unchanged, 3
 * resize, 4 graph change).  A VM's active layer and its read-only backing
 * files are all locked so; `qemu-img` and `qemu-io` refuse a locked image
 * with "Failed to get ... lock".  The kernel reports OFD locks with pid -1
 * (/proc/locks and F_OFD_GETLK), but /proc/PID/fdinfo/FD lists the locks
 * taken through each descriptor ("lock:" lines), which names the holder.
 *
 * Probing opens the file read-only and asks F_OFD_GETLK for a write lock
 * over SM_IMAGE_LOCK_START..SM_IMAGE_LOCK_END: any lock there, shared or
 * not, is someone using the image.  snapmig takes that range exclusively
 * itself while it rewrites a file, so that a QEMU opening the image
 * meanwhile fails instead of reading a half-written layer.
 */
#ifndef SM_IMAGE_LOCK_H
#define SM_IMAGE_LOCK_H

#include <stdbool.h>
#include <sys/types.h>
#include <glib.h>

#include "error.h"

/* The bytes QEMU's permission locks live in (100..1xx, 200..2xx). */
#define SM_IMAGE_LOCK_START 100
#define SM_IMAGE_LOCK_END   299

typedef struct {
  pid_t pid;
  char *comm;                  /* base name of argv[0] (or /proc/PID/comm) */
  bool locks;                  /* holds locks through the file (fdinfo), not
                                  only a descriptor of it */
} SmImageHolder;

void sm_image_holder_free (SmImageHolder *holder);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmImageHolder, sm_image_holder_free)

/* Sets *LOCKED when a process other than the caller's open file
 * descriptions holds a byte-range lock in QEMU's lock bytes of the file open
 * as FD (any mode).  SM_ERROR_IO naming PATH (for messages only) when the
 * kernel cannot say. */
bool sm_image_lock_probe_fd (int fd, const char *path, bool *locked,
                             GError **error);

/* sm_image_lock_probe_fd on PATH opened read-only.  A missing file is not
 * locked (no error). */
bool sm_image_lock_probe (const char *path, bool *locked, GError **error);

/* The processes other than the caller that have the file PATH (or, when
 * FD >= 0, the file open as FD) open, those holding locks through it first
 * (SmImageHolder *).  Processes whose /proc entries cannot be read are not
 * seen.  Never fails; an empty array when nobody is seen.  Caller frees. */
GPtrArray *sm_image_holders (const char *path, int fd)
  G_GNUC_WARN_UNUSED_RESULT;

/* "qemu-system-x86_64 (pid 1234)" for each holder of PATH (FD as above)
 * that holds locks, or for every process that has it open when none is
 * seen holding locks; "another process (not found in /proc)" when nobody
 * is seen.  OWN_PID (0: none) is named "the VM being migrated, COMM (pid
 * N)".  Caller frees. */
char *sm_image_holders_describe (const char *path, int fd, pid_t own_pid)
  G_GNUC_WARN_UNUSED_RESULT;

/* Checks that no other process holds QEMU's locks on PATH: false with
 * SM_ERROR_IN_USE "PATH: in use: held by HOLDERS" otherwise (OWN_PID as in
 * sm_image_holders_describe).  A missing file is free. */
bool sm_image_check_unlocked (const char *path, pid_t own_pid, GError **error);

/* Takes QEMU's lock bytes exclusively through FD (open for writing), so
 * that no QEMU can open the image until FD is closed.  False with
 * SM_ERROR_IN_USE naming PATH and the holders when another process holds a
 * lock there, SM_ERROR_IO when the kernel refuses otherwise. */
bool sm_image_lock_exclusive (int fd, const char *path, GError **error);

/* The PID of the process at the other end of the connected unix socket FD
 * (SO_PEERCRED): for a QMP socket, the QEMU we talk to.  SM_ERROR_IO. */
bool sm_socket_peer_pid (int fd, pid_t *pid, GError **error);

/* The inode of the listening unix socket bound to PATH (/proc/net/unix),
 * 0 if none. */
unsigned long sm_unix_socket_inode (const char *path);

/* The PID of the process listening on the unix socket PATH (a QMP server:
 * the QEMU snapmig talks to), found from /proc/net/unix and the processes'
 * descriptors, for a caller that has no connected descriptor; 0 when it
 * cannot be told (no such socket, /proc unreadable, a TCP address). */
pid_t sm_unix_socket_server_pid (const char *path);

#endif /* SM_IMAGE_LOCK_H */
