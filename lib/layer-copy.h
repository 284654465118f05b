/* libsnapmig — copying read-only backing layers into their pre-created
 * destination files, in a detached worker process.
 *
 * A layer is copied as a file, not through its guest view: the allocated
 * extents of the source file (SEEK_DATA/SEEK_HOLE) are copied, holes stay
 * holes, so the destination holds exactly that layer's clusters and
 * metadata.  A file is written with O_DIRECT straight from the source's
 * mapped pages (no copy by the CPU, nothing of the destination in the page
 * cache; 4 MiB mapped per thread at a time), and through the page cache in
 * windows written back at once where O_DIRECT is refused (an unaligned
 * tail, a file system without it); a block device with O_DIRECT from a
 * buffer.  Each
 * destination is fdatasync'ed before its layer counts as copied.  A block device destination (a logical volume of a block storage
 * domain) is not sparse: its ranges under the source's holes are zeroed
 * instead (the device is asked to, zeros are written if it refuses), and
 * what lies past the source's size on it is left alone.  The backing name
 * and format are then set to the planned relative ones with `qemu-img
 * rebase -u` when they differ.
 * This is as fast as the file system can copy and cannot change what the
 * guest sees through the chain.
 *
 * Before it changes a destination the copy takes QEMU's image lock bytes
 * on it exclusively (lib/image-lock.h), held until the layer is written: a
 * destination another process holds (a VM runs on it) fails, naming the
 * file and the holder, and is left as it was; a QEMU that opens it
 * meanwhile fails to.  A destination that already holds the source layer
 * byte for byte (copied there before: create --reuse-external) is not
 * rewritten; its status layer says "skipped".
 *
 * The worker records its PID, its start time (to recognise the process, not
 * a reused PID) and per-layer state/progress/error in a JSON status file,
 * rewritten atomically as it goes, so that `status`, `pivot` and `abort`
 * (other processes) can follow or stop it.
 */
#ifndef SM_LAYER_COPY_H
#define SM_LAYER_COPY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#include "error.h"
#include "image.h"

typedef struct {
  char *disk;                  /* the disk the layer belongs to (messages) */
  char *source;                /* read-only source layer */
  char *dest;                  /* existing destination file or block
                                  device (overwritten) */
  SmImageFormat format;
  char *backing_name;          /* wanted backing name (relative), or NULL */
  SmImageFormat backing_format;
} SmLayerCopy;

SmLayerCopy *sm_layer_copy_new (const char *disk, const char *source,
                                const char *dest, SmImageFormat format,
                                const char *backing_name,
                                SmImageFormat backing_format)
  G_GNUC_WARN_UNUSED_RESULT;
void sm_layer_copy_free (SmLayerCopy *copy);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmLayerCopy, sm_layer_copy_free)

/* Sets COPY's destination's backing name and format to the planned ones
 * (qemu-img rebase -u) when they differ; a raw layer or one without backing
 * is left alone. */
bool sm_layer_copy_set_backing (const SmLayerCopy *copy, GError **error);

typedef void (*SmLayerCopyProgress) (uint64_t done, uint64_t total,
                                     void *opaque);

/* Copies one layer in the calling thread (see above); PROGRESS (may be NULL)
 * is called as data is copied (its total counts the source's data, not the
 * zeroing of a device's holes).  The destination must exist and be a
 * regular file, which is truncated and rewritten, or a block device at
 * least as large as the source file (refused before anything is written
 * to it otherwise).  Errors name the source or the destination. */
bool sm_layer_copy_run (const SmLayerCopy *copy, SmLayerCopyProgress progress,
                        void *opaque, GError **error);

typedef enum {
  SM_COPY_PENDING,
  SM_COPY_RUNNING,
  SM_COPY_DONE,
  SM_COPY_FAILED,
  SM_COPY_STATE_LAST
} SmCopyState;
const char *sm_copy_state_to_string (SmCopyState state);

typedef struct {
  SmLayerCopy *copy;
  SmCopyState state;
  uint64_t done, total;        /* bytes of data copied, to copy */
  char *error;                 /* SM_COPY_FAILED: why */
  bool skipped;                /* the destination already held the layer
                                  byte for byte: not rewritten */
} SmCopyStatusLayer;

typedef struct {
  pid_t pid;                   /* the worker, 0 before it started */
  uint64_t start_time;         /* /proc/PID/stat start time */
  uint64_t bandwidth;          /* the worker's limit, bytes/s, 0: none */
  SmCopyState state;           /* DONE when every layer is, FAILED when one
                                  failed or the worker died */
  GPtrArray *layers;           /* SmCopyStatusLayer * */
} SmCopyStatus;

void sm_copy_status_free (SmCopyStatus *status);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmCopyStatus, sm_copy_status_free)

/* Starts a detached worker (fork, setsid, fork, exec of the snapmig binary
 * of sm_helper_path (lib/helper.h) as `snapmig copy-worker`: it is
 * nobody's child and holds no descriptor of the caller, so no lock) copying
 * every SmLayerCopy of COPIES, all in parallel, writing at most BANDWIDTH bytes of data per
 * second in all (0: as fast as the disks go; recorded in the status).
 * Returns once the worker has written its first status to STATUS_PATH,
 * with its PID.  An empty COPIES writes a finished status and starts
 * nothing (returns 0). */
bool sm_copy_worker_spawn (GPtrArray *copies, uint64_t bandwidth,
                           const char *status_path, pid_t *pid,
                           GError **error);

/* The worker itself, in the process `snapmig copy-worker --status
 * STATUS_PATH --ready-fd READY_FD` runs: reads its layers and limit from
 * STATUS_PATH (saved by sm_copy_worker_spawn), records itself running,
 * writes its PID (int32) to READY_FD, then copies.  Returns the process's
 * exit status (0: every layer copied). */
int sm_copy_worker_main (const char *status_path, int ready_fd);

/* The rate limit of the copy (--bandwidth), as pure functions: how long
 * to wait before writing on when BYTES_BEFORE bytes were let through in
 * ELAPSED_US microseconds since the copy started, at RATE bytes/s (0: no
 * limit, no wait); and how many bytes the copy writes between two such
 * looks (a window, see layer-copy.c, or less for a low RATE). */
uint64_t sm_copy_rate_delay_us (uint64_t bytes_before, uint64_t rate,
                                uint64_t elapsed_us);
uint64_t sm_copy_rate_step (uint64_t rate);

/* Reads STATUS_PATH.  A worker recorded as running that no longer exists is
 * reported as FAILED ("the copy worker PID died").  Caller frees. */
SmCopyStatus *sm_copy_status_load (const char *status_path, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* Kills the worker recorded in STATUS_PATH (SIGKILL, only if the process is
 * the one recorded) and waits until it is gone.  A missing status file or a
 * worker already gone is fine. */
bool sm_copy_worker_kill (const char *status_path, int timeout_ms,
                          GError **error);

#endif /* SM_LAYER_COPY_H */
