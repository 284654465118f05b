/* libsnapmig — layer copies and the detached copy worker (see
 * layer-copy.h). */
#include "layer-copy.h"

#include "interrupt.h"

#include <errno.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/fs.h>   /* BLKGETSIZE64, BLKZEROOUT */

#include "helper.h"
#include "image-lock.h"
#include "json-util.h"
#include "qmp.h"        /* g_autoptr(json_object) */
#include "state.h"

#define DOMAIN "layer-copy"

/* Unit of work of the copy threads, and how many threads.  Measured on a
 * 2-core machine with ext4 on a virtio disk, copying 2 x (1 GiB + 64 MiB)
 * with direct writes (10 interleaved runs each): 2 threads took 0.67 to
 * 0.84 s (median 0.78), 4 threads 0.77 to 0.91 s (median 0.84), 1 thread
 * with 8 MiB buffers 0.84 to 0.94 s; two write streams keep this device
 * busy, more of them only interleave the files' extents.  A single layer
 * still gets both threads (64 MiB pieces). */
#define CHUNK ((uint64_t) 64 << 20)
#define COPY_THREADS 2
#define BUF_SIZE ((size_t) 4 << 20)
/* Regular file destinations are written with O_DIRECT from the mapped
 * source (copy_mapped); what that refuses (an unaligned tail, a file system
 * without O_DIRECT) is written through the page cache in windows of WINDOW
 * bytes: each window's writeback starts as soon as it is
 * written (sync_file_range WRITE), and before the next one is written the
 * window behind it is waited for and its pages dropped (posix_fadvise
 * DONTNEED).  A thread has at most two windows dirty or under writeback,
 * the worker 2 x COPY_THREADS x WINDOW = 64 MiB, whatever the layers' size:
 * the copy neither fills the page cache with dirty data that a later
 * fdatasync (or the kernel's writeback, at its own pace) must write, nor
 * evicts the running VM's cache with its own (sampled: Dirty + Writeback
 * of /proc/meminfo stayed under 70 MiB while the worker copied 2 x 1 GiB).
 * Measured (bench/stream-copy, 2 x 1 GiB of random data, ext4 on a virtio
 * disk, 5 interleaved runs, load 1 to 2): 1.90 to 2.26 s (median 2.11)
 * this way against 2.10 to 2.62 s (median 2.22) with O_DIRECT 2 MiB
 * requests one at a time (the write path before); 4 MiB windows 2.00 to
 * 2.14 s, 64 MiB ones 2.10 to 2.89 s.  The price is CPU time: the page
 * cache's work (allocating, writing back and dropping every page) made it
 * 0.5 to 0.65 s per GiB against 0.2 to 0.35 s with O_DIRECT, in the worker
 * (bench/layer-copy) as in bench/stream-copy.  copy_file_range() spares the
 * copy through user memory: 1.03 to 1.25 s of CPU for 2 GiB, pread/pwrite
 * 1.21 to 2.34 s. */
#define WINDOW ((uint64_t) 16 << 20)
/* Block device destinations keep direct writes: on loop devices (2 x 1 GiB,
 * 5 runs) O_DIRECT took 1.02 to 1.35 s, the windowed buffered writes 1.60
 * to 1.73 s (one run 6.2 s).
 * Direct writes: each thread's buffer, and the alignment of offsets,
 * lengths and buffer that every device and file system accepts for
 * O_DIRECT (4 KiB sectors included).  2 MiB buffers copied as fast as 4 or
 * 8 MiB ones (see copy_direct) and keep the worker's memory small. */
#define DIRECT_BUF_SIZE ((size_t) 2 << 20)
/* Regular file destinations: the step of copy_mapped (see there).  The
 * mapped pages count in the worker's resident set while they are written:
 * 2 threads x 4 MiB kept its peak RSS at 11 MiB (8 MiB steps: 19 MiB, no
 * faster). */
#define MAP_STEP ((uint64_t) 4 << 20)
#define DIRECT_ALIGN 4096
/* --bandwidth: the smallest step the limiter cuts the writes into. */
#define RATE_MIN_STEP ((uint64_t) 64 << 10)
#define STATUS_INTERVAL_US (200 * 1000)

SmLayerCopy *
sm_layer_copy_new (const char *disk, const char *source, const char *dest,
                   SmImageFormat format, const char *backing_name,
                   SmImageFormat backing_format)
{
  SmLayerCopy *copy = g_new0 (SmLayerCopy, 1);

  copy->disk = g_strdup (disk);
  copy->source = g_strdup (source);
  copy->dest = g_strdup (dest);
  copy->format = format;
  copy->backing_name = g_strdup (backing_name);
  copy->backing_format = backing_format;
  return copy;
}

void
sm_layer_copy_free (SmLayerCopy *copy)
{
  if (!copy)
    return;
  g_free (copy->disk);
  g_free (copy->source);
  g_free (copy->dest);
  g_free (copy->backing_name);
  g_free (copy);
}

static const char *const state_names[SM_COPY_STATE_LAST] = {
  [SM_COPY_PENDING] = "pending",
  [SM_COPY_RUNNING] = "running",
  [SM_COPY_DONE] = "done",
  [SM_COPY_FAILED] = "failed",
};

const char *
sm_copy_state_to_string (SmCopyState state)
{
  return (unsigned) state < SM_COPY_STATE_LAST ? state_names[state] : NULL;
}

static SmCopyState
copy_state_from_string (const char *s)
{
  unsigned i;

  for (i = 0; s && i < SM_COPY_STATE_LAST; i++)
    if (strcmp (state_names[i], s) == 0)
      return i;
  return SM_COPY_FAILED;
}

/* ---- copying --------------------------------------------------------- */

/* ---- the rate limit (--bandwidth) ------------------------------------ */

uint64_t
sm_copy_rate_delay_us (uint64_t bytes_before, uint64_t rate,
                       uint64_t elapsed_us)
{
  unsigned __int128 due;

  if (rate == 0)
    return 0;
  /* Byte B may be written B / RATE seconds after the start. */
  due = (unsigned __int128) bytes_before * G_USEC_PER_SEC / rate;
  return due > elapsed_us ? (uint64_t) (due - elapsed_us) : 0;
}

uint64_t
sm_copy_rate_step (uint64_t rate)
{
  uint64_t step;

  if (rate == 0)
    return WINDOW;
  /* About four steps a second: the copy never runs ahead of the limit by
   * more than a quarter of a second's worth of bytes. */
  step = rate / 4 / DIRECT_ALIGN * DIRECT_ALIGN;
  return CLAMP (step, RATE_MIN_STEP, WINDOW);
}

/* ---- copying --------------------------------------------------------- */

/* Copies [OFF, OFF+LEN) of SRC to the same offset of DST through the page
 * cache: in the kernel when the file systems allow it (no copy through user
 * memory; a file system that shares extents shares them), else through BUF
 * (DIRECT_BUF_SIZE bytes). */
static bool
copy_range (int src, int dst, off_t off, uint64_t len, char *buf,
            const SmLayerCopy *copy, GError **error)
{
  bool use_cfr = true;

  while (len > 0) {
    size_t n = (size_t) len;
    ssize_t got;

    if (use_cfr) {
      loff_t in = off, out = off;

      got = copy_file_range (src, &in, dst, &out, n, 0);
      if (got < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
                      errno == EOPNOTSUPP)) {
        use_cfr = false;
        continue;
      }
    } else {
      n = MIN (n, DIRECT_BUF_SIZE);
      got = pread (src, buf, n, off);
      if (got > 0) {
        ssize_t put = 0, w;

        while (put < got) {
          w = pwrite (dst, buf + put, (size_t) (got - put), off + put);
          if (w < 0 && errno == EINTR)
            continue;
          if (w < 0) {
            g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: write: %s",
                         copy->dest, g_strerror (errno));
            return false;
          }
          put += w;
        }
      }
    }
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "copy of %s to %s: %s",
                   copy->source, copy->dest, g_strerror (errno));
      return false;
    }
    if (got == 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO,
                   "copy of %s: the file shrank while being copied",
                   copy->source);
      return false;
    }
    off += got;
    len -= (uint64_t) got;
  }
  return true;
}

/* Waits until the window [OFF, OFF+LEN) of DST, whose writeback was
 * started, is on the disk, and drops its pages from the page cache.  The
 * error of a failed writeback is reported here: once sync_file_range() has
 * returned it, the final fdatasync() would not report it again. */
static bool
window_written (int dst, off_t off, uint64_t len, const char *dest,
                GError **error)
{
  if (sync_file_range (dst, off, (off_t) len,
                       SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                       SYNC_FILE_RANGE_WAIT_AFTER) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: write: %s", dest,
                 g_strerror (errno));
    return false;
  }
  posix_fadvise (dst, off, (off_t) len, POSIX_FADV_DONTNEED);
  return true;
}

bool
sm_layer_copy_set_backing (const SmLayerCopy *copy, GError **error)
{
  g_autoptr(SmImageInfo) info = sm_image_probe (copy->dest, copy->format,
                                                error);
  const char *want_fmt = sm_image_format_to_string (copy->backing_format);
  g_autofree char *out = NULL;
  int status = 0;

  if (!info)
    return false;
  if (copy->format != SM_IMAGE_FORMAT_QCOW2 || !copy->backing_name)
    return true;
  if (g_strcmp0 (info->backing_file, copy->backing_name) == 0 &&
      g_strcmp0 (info->backing_format, want_fmt) == 0)
    return true;
  {
    const char *argv[] = { "qemu-img", "rebase", "-u", "-f", "qcow2", "-b",
                           copy->backing_name, "-F", want_fmt, copy->dest,
                           NULL };
    GError *err = NULL;

    if (!g_spawn_sync (NULL, (char **) argv, NULL,
                       G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL, NULL,
                       NULL, NULL, &out, &status, &err)) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: qemu-img rebase: %s",
                   copy->dest, err->message);
      g_error_free (err);
      return false;
    }
  }
  if (!g_spawn_check_wait_status (status, NULL)) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "%s: qemu-img rebase -u failed: %s", copy->dest,
                 g_strstrip (out));
    return false;
  }
  return true;
}

/* The copies of a set of layers, cut into chunks of data extents that a few
 * threads take from one queue: large layers are copied in parallel too,
 * which a single copy stream does not saturate. */
typedef struct {
  GMutex lock;
  GCond changed_cond;
  GQueue chunks;               /* Chunk *, owned */
  GPtrArray *jobs;             /* LayerJob *, owned */
  bool changed;                /* status moved since the last save */
  guint running;               /* layers not finished */
  SmLayerCopyProgress progress;  /* single-layer API only */
  void *opaque;
  uint64_t rate;               /* --bandwidth, bytes/s, 0: unlimited */
  uint64_t step;               /* bytes written between two looks at the
                                  limit (sm_copy_rate_step) */
  gint64 rate_start;           /* monotonic time the copy started, us */
  uint64_t rate_bytes;         /* bytes the limit let through so far */
} Copier;

typedef struct {
  SmCopyStatusLayer *layer;    /* owned by the caller */
  int src, dst;
  int direct;                  /* dst opened with O_DIRECT, or -1 */
  bool device;                 /* dst is a block device */
  guint pending;               /* chunks not done */
  GQueue chunks;               /* Chunk *, owned: not yet handed to the
                                  copier's queue */
  bool failed;
} LayerJob;

typedef struct {
  LayerJob *job;
  off_t off;
  uint64_t len;
  bool zero;                   /* a source hole to zero on a block device */
} Chunk;

static void
layer_job_free (gpointer p)
{
  LayerJob *job = p;

  if (job->src >= 0)
    close (job->src);
  if (job->dst >= 0)
    close (job->dst);
  if (job->direct >= 0)
    close (job->direct);
  g_queue_clear_full (&job->chunks, g_free);
  g_free (job);
}

/* Called with the lock held. */
static void
job_fail (Copier *c, LayerJob *job, GError *err)
{
  if (!job->failed) {
    job->failed = true;
    job->layer->state = SM_COPY_FAILED;
    g_free (job->layer->error);
    job->layer->error = g_strdup (err->message);
  }
  c->changed = true;
}

/* The last chunk of a layer is done: make it durable and give it its
 * backing name.  Called without the lock.  The sync costs time (qemu-img
 * convert does not sync its output) but nobody else would ever flush these
 * files: QEMU only flushes the layers it writes, and after `pivot
 * --delete-source` they are the only copy. */
static void
job_finish (Copier *c, LayerJob *job)
{
  g_autoptr(GError) err = NULL;
  bool ok = !job->failed;

  if (ok && fdatasync (job->dst) < 0) {
    g_set_error (&err, SM_ERROR, SM_ERROR_IO, "%s: sync: %s",
                 job->layer->copy->dest, g_strerror (errno));
    ok = false;
  }
  close (job->dst);
  job->dst = -1;
  if (job->direct >= 0)
    close (job->direct);
  job->direct = -1;
  close (job->src);
  job->src = -1;
  if (ok && !sm_layer_copy_set_backing (job->layer->copy, &err))
    ok = false;
  g_mutex_lock (&c->lock);
  if (!ok && err)
    job_fail (c, job, err);
  else if (ok)
    job->layer->state = SM_COPY_DONE;
  c->running--;
  c->changed = true;
  g_cond_broadcast (&c->changed_cond);
  g_mutex_unlock (&c->lock);
}

/* Queues [OFF, END) of JOB in CHUNK pieces on the job's own list (the
 * copier interleaves the layers): data to copy, or with ZERO a
 * range to zero on a device. */
static void
queue_chunks (LayerJob *job, off_t off, off_t end, bool zero)
{
  for (; off < end; off += CHUNK) {
    Chunk *chunk = g_new0 (Chunk, 1);

    chunk->job = job;
    chunk->off = off;
    chunk->len = MIN ((uint64_t) (end - off), CHUNK);
    chunk->zero = zero;
    /* Progress counts the data copied, not the zeroing of a device's
     * holes: total is the same whatever the destination held before, and
     * zeroing is usually a cheap request to the device, not a copy. */
    if (!zero)
      job->layer->total += chunk->len;
    job->pending++;
    g_queue_push_tail (&job->chunks, chunk);
  }
}

/* Opens a block device destination: it is not truncated (it cannot be,
 * and what follows the layer's size is left alone) but must hold the whole
 * source file. */
static bool
open_block_device (LayerJob *job, const struct stat *src_st, GError **error)
{
  const SmLayerCopy *copy = job->layer->copy;
  uint64_t size;

  job->dst = open (copy->dest, O_RDWR | O_CLOEXEC);
  if (job->dst < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: cannot open: %s",
                 copy->dest, g_strerror (errno));
    return false;
  }
  if (!sm_image_lock_exclusive (job->dst, copy->dest, error))
    return false;
  if (ioctl (job->dst, BLKGETSIZE64, &size) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "%s: cannot read the block device's size: %s", copy->dest,
                 g_strerror (errno));
    return false;
  }
  if (size < (uint64_t) src_st->st_size) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: block device too small for %s: %" PRIu64 " bytes, "
                 "the layer needs %" PRIu64, copy->dest, copy->source, size,
                 (uint64_t) src_st->st_size);
    return false;
  }
  return true;
}

/* True when [OFF, OFF+LEN) of FD is a hole (reads as zeros). */
static bool
is_hole (int fd, off_t off, size_t len)
{
  off_t data = lseek (fd, off, SEEK_DATA);

  if (data < 0)
    return errno == ENXIO;
  return data >= off + (off_t) len;
}

/* True when the destination open as DST already holds the source layer
 * SRC byte for byte over the source's SIZE bytes (a layer copied there
 * before, e.g. for `create --reuse-external`): it is then not rewritten.
 * A regular file must also be of that very size.  Reading both costs far
 * less than rewriting, and a file just created by precreate (a few
 * clusters of metadata) has another size and is not read at all. */
static bool
dest_holds_layer (int src, int dst, const struct stat *src_st,
                  const struct stat *dst_st)
{
  g_autofree char *a = NULL, *b = NULL;
  off_t off = 0;

  if (S_ISREG (dst_st->st_mode) && dst_st->st_size != src_st->st_size)
    return false;
  /* A sparse file made by precreate (raw: all hole) against a source with
   * data differs at once, without reading the source's holes. */
  if (S_ISREG (dst_st->st_mode) && lseek (dst, 0, SEEK_DATA) < 0 &&
      errno == ENXIO && !(lseek (src, 0, SEEK_DATA) < 0 && errno == ENXIO))
    return false;
  a = g_malloc (BUF_SIZE);
  b = g_malloc (BUF_SIZE);
  while (off < src_st->st_size) {
    size_t want = (size_t) MIN ((off_t) BUF_SIZE, src_st->st_size - off);
    ssize_t ra, rb;

    if (S_ISREG (dst_st->st_mode) && is_hole (src, off, want) &&
        is_hole (dst, off, want)) {
      off += (off_t) want;
      continue;
    }
    ra = pread (src, a, want, off);
    rb = pread (dst, b, want, off);

    if (ra != (ssize_t) want || rb != (ssize_t) want ||
        memcmp (a, b, want) != 0)
      return false;
    off += (off_t) want;
  }
  return true;
}

static bool
job_open (Copier *c, SmCopyStatusLayer *layer, GError **error)
{
  const SmLayerCopy *copy = layer->copy;
  LayerJob *job = g_new0 (LayerJob, 1);
  struct stat st, dst_st;
  off_t off = 0, queued = 0, grain = 0;
  bool device;

  job->layer = layer;
  job->src = job->dst = job->direct = -1;
  g_ptr_array_add (c->jobs, job);
  job->src = open (copy->source, O_RDONLY | O_CLOEXEC);
  if (job->src < 0) {
    g_set_error (error, SM_ERROR, errno == ENOENT ? SM_ERROR_NOT_FOUND
                                                  : SM_ERROR_IO,
                 "%s: cannot open: %s", copy->source, g_strerror (errno));
    return false;
  }
  if (fstat (job->src, &st) < 0 || !S_ISREG (st.st_mode)) {
    g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                 "%s: only regular files are copied", copy->source);
    return false;
  }
  /* oVirt's block domains hold layers in logical volumes that the
   * administrator created (create --reuse-external onto LVs). */
  if (stat (copy->dest, &dst_st) < 0 ||
      !(S_ISREG (dst_st.st_mode) || S_ISBLK (dst_st.st_mode))) {
    g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                 "%s: the destination must be an existing regular file or "
                 "block device", copy->dest);
    return false;
  }
  device = S_ISBLK (dst_st.st_mode);
  if (device) {
    if (!open_block_device (job, &st, error))
      return false;
    /* Data extents are widened to whole pages (reading the source's
     * holes as zeros) so that no page holds both copied data and a range
     * zeroed by another thread: zeroing drops the device's cached pages
     * in its range, which would race with a buffered write sharing one. */
    grain = MAX ((off_t) DIRECT_ALIGN, (off_t) sysconf (_SC_PAGESIZE));
  } else {
    /* Not O_TRUNC: nothing is changed before the lock below is ours. */
    job->dst = open (copy->dest, O_RDWR | O_CLOEXEC);
    if (job->dst < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: cannot open: %s",
                   copy->dest, g_strerror (errno));
      return false;
    }
    /* Another process may have opened the file since create checked it:
     * QEMU's image locks say so.  Ours, held until the layer is written,
     * makes any QEMU that opens it meanwhile fail instead of reading a
     * half-written layer. */
    if (!sm_image_lock_exclusive (job->dst, copy->dest, error))
      return false;
  }
  if (dest_holds_layer (job->src, job->dst, &st, &dst_st)) {
    sm_debug (DOMAIN, "%s already holds %s: not rewritten", copy->dest,
              copy->source);
    layer->skipped = true;
    layer->done = layer->total = (uint64_t) st.st_size;
    layer->state = SM_COPY_RUNNING;
    return true;
  }
  if (!device &&
      (ftruncate (job->dst, 0) < 0 || ftruncate (job->dst, st.st_size) < 0)) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: cannot truncate: %s",
                 copy->dest, g_strerror (errno));
    return false;
  }
  /* A device is written with O_DIRECT (faster there, see DIRECT_BUF_SIZE)
   * when it takes it, a file through the page cache (see WINDOW). */
  job->direct = open (copy->dest, O_WRONLY | O_CLOEXEC | O_DIRECT);
  job->device = device;
  /* Holes stay holes in a file: only the extents holding data are copied.
   * A device is not sparse and may hold old data: its ranges under the
   * source's holes are zeroed. */
  while (off < st.st_size) {
    off_t data = lseek (job->src, off, SEEK_DATA), hole;

    if (data < 0 && errno == ENXIO)
      break;
    if (data < 0 || (hole = lseek (job->src, data, SEEK_HOLE)) < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: lseek: %s",
                   copy->source, g_strerror (errno));
      return false;
    }
    if (device) {
      data = MAX (data / grain * grain, queued);
      hole = MIN ((hole + grain - 1) / grain * grain, st.st_size);
      queue_chunks (job, queued, data, true);
    }
    queue_chunks (job, data, hole, false);
    queued = MAX (queued, hole);
    off = hole;
  }
  if (device)
    queue_chunks (job, queued, st.st_size, true);
  layer->state = SM_COPY_RUNNING;
  return true;
}

/* Writes LEN zero bytes at OFF of DST (the device's own zeroing refused). */
static bool
write_zeros (int dst, off_t off, uint64_t len, const char *dest,
             GError **error)
{
  static const char zeros[64 << 10];

  while (len > 0) {
    ssize_t w = pwrite (dst, zeros, (size_t) MIN (len, sizeof zeros), off);

    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: write: %s", dest,
                   w < 0 ? g_strerror (errno) : "nothing written");
      return false;
    }
    off += w;
    len -= (uint64_t) w;
  }
  return true;
}

/* Zeroes [OFF, OFF+LEN) of a block device destination (OFF is
 * DIRECT_ALIGN-aligned).  The device is asked to do it (a thin LV or a
 * loop device only unmaps or marks the range, a disk with WRITE ZEROES does
 * it itself, for the others the kernel writes zero pages); zero buffers are
 * written when it refuses (EBUSY: another opener holds the device
 * exclusively) and for an unaligned end, which the device's logical block
 * size may not allow. */
static bool
zero_range (LayerJob *job, off_t off, uint64_t len, GError **error)
{
  const char *dest = job->layer->copy->dest;
  uint64_t body = len / DIRECT_ALIGN * DIRECT_ALIGN;
  uint64_t range[2] = { (uint64_t) off, body };

  if (body > 0) {
    if (fallocate (job->dst, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off,
                   (off_t) body) == 0) {
      off += (off_t) body;
      len -= body;
    } else {
      sm_debug (DOMAIN, "%s: fallocate(ZERO_RANGE) at %" PRIu64 ": %s",
                dest, (uint64_t) off, g_strerror (errno));
      if (ioctl (job->dst, BLKZEROOUT, range) == 0) {
        off += (off_t) body;
        len -= body;
      } else {
        sm_debug (DOMAIN, "%s: BLKZEROOUT at %" PRIu64 ": %s, writing zeros",
                  dest, (uint64_t) off, g_strerror (errno));
      }
    }
  }
  return write_zeros (job->dst, off, len, dest, error);
}

/* Waits until the limit lets N more bytes through (--bandwidth), and counts
 * them. */
static void
rate_wait (Copier *c, uint64_t n)
{
  uint64_t before, delay;

  if (c->rate == 0)
    return;
  g_mutex_lock (&c->lock);
  before = c->rate_bytes;
  c->rate_bytes += n;
  g_mutex_unlock (&c->lock);
  delay = sm_copy_rate_delay_us (before, c->rate,
                                 (uint64_t) (g_get_monotonic_time () -
                                             c->rate_start));
  if (delay > 0)
    g_usleep ((gulong) delay);
}

/* Copies [*OFF, *OFF+*LEN) of SRC to DIRECT (the destination opened with
 * O_DIRECT) through BUF (DIRECT_BUF_SIZE bytes, DIRECT_ALIGN-aligned),
 * advancing *OFF and *LEN.  *OFF and *LEN must be DIRECT_ALIGN multiples.
 * Block device destinations only (see DIRECT_BUF_SIZE): the data goes
 * straight to the device, nothing is left to write back.  The fdatasync
 * at the end is still needed (the device's cache).
 *
 * Returns false with errno set; EINVAL means the destination refused a
 * direct write (alignment it does not accept), and the caller copies the
 * rest without O_DIRECT. */
static bool
copy_direct (Copier *c, int src, int direct, char *buf, off_t *off,
             uint64_t *len)
{
  while (*len > 0) {
    size_t n = (size_t) MIN (MIN (*len, DIRECT_BUF_SIZE), c->step);
    ssize_t got, put = 0;

    rate_wait (c, n);
    do
      got = pread (src, buf, n, *off);
    while (got < 0 && errno == EINTR);
    if (got < 0)
      return false;
    /* The source shrank, or an odd-sized short read: the buffered path
     * copes with (and reports) both. */
    if (got == 0 || got % DIRECT_ALIGN != 0) {
      errno = EINVAL;
      return false;
    }
    while (put < got) {
      ssize_t w = pwrite (direct, buf + put, (size_t) (got - put),
                          *off + put);

      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        return false;
      /* A short direct write leaves an unaligned rest: hand it over. */
      if (w % DIRECT_ALIGN != 0) {
        *off += put + w;
        *len -= (uint64_t) (put + w);
        errno = EINVAL;
        return false;
      }
      put += w;
    }
    *off += got;
    *len -= (uint64_t) got;
  }
  return true;
}

/* Copies [*OFF, *OFF+*LEN) of SRC to DIRECT (a regular file opened with
 * O_DIRECT) straight from the source's pages: each step of the range is
 * mapped (MAP_SHARED, read-only) and written with O_DIRECT from the mapping,
 * so the data goes from the source's page cache to the disk without being
 * copied by the CPU (the kernel reads what is not cached yet), and nothing
 * of the destination sits in the page cache.  Measured (1 GiB of random
 * data, ext4 on a virtio disk, 3 runs): 0.93 to 1.09 s and 0.21 to 0.23 s
 * of CPU with 2 threads of 8 MiB steps, against 0.97 to 1.17 s and 0.55 to
 * 0.63 s with copy_file_range through the page cache; in the worker
 * (bench/layer-copy, 4 MiB steps, 4 runs) 0.84 to 0.91 s and 0.12 to 0.14
 * s of CPU against 0.88 to 0.97 s and 0.70 to 0.79 s.  *OFF and *LEN must
 * be DIRECT_ALIGN multiples; errno and the return as copy_direct's (EINVAL:
 * the caller copies the rest through the page cache).  A source truncated
 * under the mapping would end the worker with SIGBUS; the layers copied
 * are read-only backing files that nothing truncates. */
static bool
copy_mapped (Copier *c, int src, int direct, off_t *off, uint64_t *len)
{
  while (*len > 0) {
    size_t n = (size_t) MIN (MIN (*len, MAP_STEP), c->step);
    ssize_t put = 0;
    void *map;

    rate_wait (c, n);
    map = mmap (NULL, n, PROT_READ, MAP_SHARED, src, *off);
    if (map == MAP_FAILED) {
      errno = EINVAL;               /* let the page cache path try */
      return false;
    }
    madvise (map, n, MADV_WILLNEED);
    while ((size_t) put < n) {
      ssize_t w = pwrite (direct, (char *) map + put, n - (size_t) put,
                          *off + put);

      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0 || w % DIRECT_ALIGN != 0) {
        int saved = w < 0 ? errno : EINVAL;

        munmap (map, n);
        *off += put + (w > 0 ? w : 0);
        *len -= (uint64_t) (put + (w > 0 ? w : 0));
        errno = saved;
        return false;
      }
      put += w;
    }
    munmap (map, n);
    *off += (off_t) n;
    *len -= n;
  }
  return true;
}

/* Copies [OFF, OFF+LEN) of JOB through the page cache, window after window
 * (see WINDOW): each window's writeback starts once it is written, the
 * window behind it is waited for and dropped, the last one before this
 * returns.  The final fdatasync (job_finish) then has little left to do
 * but it is what makes the layer durable (metadata, the device's cache). */
static bool
copy_buffered (Copier *c, LayerJob *job, off_t off, uint64_t len, char *buf,
               GError **error)
{
  const SmLayerCopy *copy = job->layer->copy;
  off_t prev = -1;
  uint64_t prev_len = 0;

  while (len > 0) {
    uint64_t n = MIN (len, c->step);

    rate_wait (c, n);
    if (!copy_range (job->src, job->dst, off, n, buf, copy, error))
      return false;
    /* Advisory: a failure shows when the window is waited for. */
    sync_file_range (job->dst, off, (off_t) n, SYNC_FILE_RANGE_WRITE);
    if (prev >= 0 && !window_written (job->dst, prev, prev_len, copy->dest,
                                      error))
      return false;
    prev = off;
    prev_len = n;
    off += (off_t) n;
    len -= n;
  }
  return prev < 0 || window_written (job->dst, prev, prev_len, copy->dest,
                                     error);
}

/* Copies CHUNK of JOB: directly when the destination (a device) and the
 * chunk allow it, the rest through the page cache. */
static bool
copy_chunk (Copier *c, LayerJob *job, const Chunk *chunk, char *buf,
            GError **error)
{
  off_t off = chunk->off;
  uint64_t len = chunk->len;
  bool aligned = off % DIRECT_ALIGN == 0 && len % DIRECT_ALIGN == 0;

  if (chunk->zero)
    return zero_range (job, off, len, error);
  if (job->direct >= 0 && aligned &&
      !(job->device ? copy_direct (c, job->src, job->direct, buf, &off, &len)
                    : copy_mapped (c, job->src, job->direct, &off, &len)) &&
      errno != EINVAL) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "copy of %s to %s: %s",
                 job->layer->copy->source, job->layer->copy->dest,
                 g_strerror (errno));
    return false;
  }
  if (len == 0)
    return true;
  return copy_buffered (c, job, off, len, buf, error);
}

static gpointer
copier_thread (gpointer opaque)
{
  Copier *c = opaque;
  g_autofree char *buf = NULL;

  /* One buffer per thread, for the direct copies and the buffered ones
   * that copy_file_range() cannot make.  g_free() is free() since GLib
   * 2.46. */
  if (posix_memalign ((void **) &buf, DIRECT_ALIGN, DIRECT_BUF_SIZE) != 0)
    g_error ("out of memory");
  for (;;) {
    g_autoptr(GError) err = NULL;
    Chunk *chunk;
    LayerJob *job;
    bool skip, last;

    g_mutex_lock (&c->lock);
    chunk = g_queue_pop_head (&c->chunks);
    skip = chunk && chunk->job->failed;
    g_mutex_unlock (&c->lock);
    if (!chunk)
      return NULL;
    job = chunk->job;
    if (!skip && !copy_chunk (c, job, chunk, buf, &err)) {
      g_mutex_lock (&c->lock);
      job_fail (c, job, err);
      g_mutex_unlock (&c->lock);
    }
    g_mutex_lock (&c->lock);
    if (!chunk->zero)
      job->layer->done += chunk->len;
    last = --job->pending == 0;
    c->changed = true;
    if (c->progress)
      c->progress (job->layer->done, job->layer->total, c->opaque);
    g_mutex_unlock (&c->lock);
    g_free (chunk);
    if (last)
      job_finish (c, job);
  }
}

/* Copies every layer of LAYERS (SmCopyStatusLayer *), updating their state,
 * progress and error under the copier's lock; SAVE (may be NULL) is called
 * with the lock held whenever something changed, at most every
 * STATUS_INTERVAL_US, and once at the end.  True when every layer is done. */
static bool
copy_layers (GPtrArray *layers, uint64_t rate, SmLayerCopyProgress progress,
             void *opaque, void (*save) (void *data), void *save_data)
{
  Copier c = { .progress = progress, .opaque = opaque, .rate = rate,
               .step = sm_copy_rate_step (rate) };
  g_autoptr(GPtrArray) threads = g_ptr_array_new ();
  guint i, nthreads;
  bool ok = true;

  g_mutex_init (&c.lock);
  g_cond_init (&c.changed_cond);
  g_queue_init (&c.chunks);
  c.jobs = g_ptr_array_new_with_free_func (layer_job_free);
  for (i = 0; i < layers->len; i++) {
    SmCopyStatusLayer *layer = layers->pdata[i];
    g_autoptr(GError) err = NULL;

    c.running++;
    if (!job_open (&c, layer, &err)) {
      LayerJob *job = c.jobs->pdata[c.jobs->len - 1];

      job_fail (&c, job, err);
      /* Pieces queued before it failed are never copied, so that the
       * layer is not finished (and counted) a second time. */
      g_queue_clear_full (&job->chunks, g_free);
      job->pending = 0;
      c.running--;
    }
  }
  /* Layers without data (or that failed to open) finish right away. */
  for (i = 0; i < c.jobs->len; i++) {
    LayerJob *job = c.jobs->pdata[i];

    if (job->pending == 0 && !job->failed)
      job_finish (&c, job);
  }
  /* One piece of each layer in turn: the threads then write into different
   * files, as many write streams as threads.  Measured (direct writes) on the
   * bench's 2 x (1 GiB + 64 MiB), 8 interleaved runs: 0.60 to 0.76 s
   * (median 0.63) against 0.70 to 0.82 s (median 0.78, one run 2 s) layer
   * after layer, with both threads in one file; `dd oflag=direct`, one
   * stream per disk, took 0.62 to 0.65 s. */
  for (bool more = true; more;) {
    more = false;
    for (i = 0; i < c.jobs->len; i++) {
      LayerJob *job = c.jobs->pdata[i];
      Chunk *chunk = g_queue_pop_head (&job->chunks);

      if (chunk) {
        g_queue_push_tail (&c.chunks, chunk);
        more = true;
      }
    }
  }
  nthreads = MIN (COPY_THREADS, g_queue_get_length (&c.chunks));
  c.rate_start = g_get_monotonic_time ();
  for (i = 0; i < nthreads; i++)
    g_ptr_array_add (threads, g_thread_new ("copy", copier_thread, &c));
  g_mutex_lock (&c.lock);
  while (c.running > 0) {
    gint64 until = g_get_monotonic_time () + STATUS_INTERVAL_US;

    g_cond_wait_until (&c.changed_cond, &c.lock, until);
    if (c.changed && save && c.running > 0)
      save (save_data);
    c.changed = false;
  }
  g_mutex_unlock (&c.lock);
  for (i = 0; i < threads->len; i++)
    g_thread_join (threads->pdata[i]);
  for (i = 0; i < layers->len; i++)
    if (((SmCopyStatusLayer *) layers->pdata[i])->state != SM_COPY_DONE)
      ok = false;
  g_ptr_array_unref (c.jobs);
  g_queue_clear_full (&c.chunks, g_free);
  g_mutex_clear (&c.lock);
  g_cond_clear (&c.changed_cond);
  return ok;
}

bool
sm_layer_copy_run (const SmLayerCopy *copy, SmLayerCopyProgress progress,
                   void *opaque, GError **error)
{
  SmCopyStatusLayer layer = { 0 };
  g_autoptr(GPtrArray) layers = g_ptr_array_new ();
  bool ok;

  layer.copy = (SmLayerCopy *) copy;
  g_ptr_array_add (layers, &layer);
  ok = copy_layers (layers, 0, progress, opaque, NULL, NULL);
  if (!ok)
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s",
                 layer.error ? layer.error : "copy failed");
  g_free (layer.error);
  return ok;
}

/* ---- status file ---------------------------------------------------- */

static void
status_layer_free (gpointer p)
{
  SmCopyStatusLayer *l = p;

  sm_layer_copy_free (l->copy);
  g_free (l->error);
  g_free (l);
}

void
sm_copy_status_free (SmCopyStatus *status)
{
  if (!status)
    return;
  g_ptr_array_unref (status->layers);
  g_free (status);
}

static SmCopyStatus *
status_new (GPtrArray *copies)
{
  SmCopyStatus *status = g_new0 (SmCopyStatus, 1);
  size_t i;

  status->layers = g_ptr_array_new_with_free_func (status_layer_free);
  for (i = 0; copies && i < copies->len; i++) {
    const SmLayerCopy *c = copies->pdata[i];
    SmCopyStatusLayer *l = g_new0 (SmCopyStatusLayer, 1);

    l->copy = sm_layer_copy_new (c->disk, c->source, c->dest, c->format,
                                 c->backing_name, c->backing_format);
    g_ptr_array_add (status->layers, l);
  }
  return status;
}

static void
add_str (json_object *o, const char *key, const char *value)
{
  if (value)
    json_object_object_add (o, key, json_object_new_string (value));
}

static bool
status_save (const SmCopyStatus *status, const char *path, GError **error)
{
  g_autoptr(json_object) root = json_object_new_object ();
  json_object *layers = json_object_new_array ();
  const char *text;
  size_t i;

  json_object_object_add (root, "pid", json_object_new_int64 (status->pid));
  json_object_object_add (root, "start-time",
                          json_object_new_int64 ((int64_t) status->start_time));
  if (status->bandwidth > 0)
    json_object_object_add (root, "bandwidth",
                            json_object_new_int64 ((int64_t) status->bandwidth));
  add_str (root, "state", sm_copy_state_to_string (status->state));
  json_object_object_add (root, "layers", layers);
  for (i = 0; i < status->layers->len; i++) {
    const SmCopyStatusLayer *l = status->layers->pdata[i];
    json_object *o = json_object_new_object ();

    add_str (o, "disk", l->copy->disk);
    add_str (o, "source", l->copy->source);
    add_str (o, "dest", l->copy->dest);
    add_str (o, "format", sm_image_format_to_string (l->copy->format));
    add_str (o, "backing-name", l->copy->backing_name);
    add_str (o, "backing-format",
             sm_image_format_to_string (l->copy->backing_format));
    add_str (o, "state", sm_copy_state_to_string (l->state));
    json_object_object_add (o, "done",
                            json_object_new_int64 ((int64_t) l->done));
    json_object_object_add (o, "total",
                            json_object_new_int64 ((int64_t) l->total));
    add_str (o, "error", l->error);
    if (l->skipped)
      json_object_object_add (o, "skipped", json_object_new_boolean (true));
    json_object_array_add (layers, o);
  }
  text = json_object_to_json_string_ext (root, JSON_C_TO_STRING_PRETTY |
                                         JSON_C_TO_STRING_NOSLASHESCAPE);
  return sm_state_write_atomic (path, text, -1, error);
}

/* Start time (clock ticks since boot, field 22 of /proc/PID/stat) of PID,
 * 0 when there is no such process or it is a zombie (dead, not reaped). */
static uint64_t
process_start_time (pid_t pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  g_autofree char *text = NULL;
  g_auto(GStrv) fields = NULL;
  const char *p;

  if (pid <= 0 || !g_file_get_contents (path, &text, NULL, NULL))
    return 0;
  /* The command name (field 2) may hold spaces: fields restart after the
   * last ')'. */
  p = strrchr (text, ')');
  if (!p)
    return 0;
  fields = g_strsplit (p + 2, " ", 0);
  /* fields[0] is field 3 (state), fields[19] field 22 (starttime). */
  if (g_strv_length (fields) < 20 || fields[0][0] == 'Z' ||
      fields[0][0] == 'X')
    return 0;
  return g_ascii_strtoull (fields[19], NULL, 10);
}

/* Reads and parses STATUS_PATH as it is, without looking at the worker. */
static SmCopyStatus *
status_read (const char *status_path, GError **error)
{
  g_autofree char *text = NULL;
  g_autoptr(json_object) root = NULL;
  g_autoptr(SmCopyStatus) status = NULL;
  json_object *layers;
  GError *err = NULL;
  int64_t pid;
  size_t i;

  if (!g_file_get_contents (status_path, &text, NULL, &err)) {
    g_set_error (error, SM_ERROR,
                 err->code == G_FILE_ERROR_NOENT ? SM_ERROR_NOT_FOUND
                                                 : SM_ERROR_IO,
                 "copy status %s: %s", status_path, err->message);
    g_error_free (err);
    return NULL;
  }
  root = json_tokener_parse (text);
  layers = sm_json_get_array (root, "layers");
  if (!layers) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "copy status %s: not a status document", status_path);
    return NULL;
  }
  status = status_new (NULL);
  if (sm_json_get_int64 (root, "pid", &pid))
    status->pid = (pid_t) pid;
  sm_json_get_uint64 (root, "start-time", &status->start_time);
  sm_json_get_uint64 (root, "bandwidth", &status->bandwidth);
  status->state = copy_state_from_string (sm_json_get_string (root, "state"));
  for (i = 0; i < json_object_array_length (layers); i++) {
    json_object *o = json_object_array_get_idx (layers, i);
    SmCopyStatusLayer *l = g_new0 (SmCopyStatusLayer, 1);
    const char *format = sm_json_get_string (o, "format");
    const char *backing_format = sm_json_get_string (o, "backing-format");
    int fmt = sm_image_format_from_string (format ? format : "");
    int bfmt = backing_format ? sm_image_format_from_string (backing_format)
                              : -1;

    l->copy = sm_layer_copy_new (sm_json_get_string (o, "disk"),
                                 sm_json_get_string (o, "source"),
                                 sm_json_get_string (o, "dest"),
                                 fmt < 0 ? SM_IMAGE_FORMAT_LAST : fmt,
                                 sm_json_get_string (o, "backing-name"),
                                 bfmt < 0 ? SM_IMAGE_FORMAT_LAST : bfmt);
    l->state = copy_state_from_string (sm_json_get_string (o, "state"));
    sm_json_get_uint64 (o, "done", &l->done);
    sm_json_get_uint64 (o, "total", &l->total);
    l->error = g_strdup (sm_json_get_string (o, "error"));
    sm_json_get_bool (o, "skipped", &l->skipped);
    g_ptr_array_add (status->layers, l);
  }
  return g_steal_pointer (&status);
}

/* True when STATUS says a worker runs that no longer exists. */
static bool
status_worker_gone (const SmCopyStatus *status)
{
  return (status->state == SM_COPY_RUNNING ||
          status->state == SM_COPY_PENDING) &&
         status->pid > 0 &&
         process_start_time (status->pid) != status->start_time;
}

SmCopyStatus *
sm_copy_status_load (const char *status_path, GError **error)
{
  g_autoptr(SmCopyStatus) status = status_read (status_path, error);
  size_t i;

  if (!status || !status_worker_gone (status))
    return g_steal_pointer (&status);
  /* The worker saves its final status, then exits: one that finished
   * between the read above and the look at its PID left a status saying
   * so.  Read again: only a status that still says running with its
   * worker gone means the worker died. */
  g_clear_pointer (&status, sm_copy_status_free);
  status = status_read (status_path, error);
  if (!status)
    return NULL;
  if (status_worker_gone (status)) {
    status->state = SM_COPY_FAILED;
    for (i = 0; i < status->layers->len; i++) {
      SmCopyStatusLayer *l = status->layers->pdata[i];

      if (l->state == SM_COPY_RUNNING || l->state == SM_COPY_PENDING) {
        l->state = SM_COPY_FAILED;
        g_free (l->error);
        l->error = g_strdup_printf ("the copy worker %d died",
                                    (int) status->pid);
      }
    }
  }
  return g_steal_pointer (&status);
}

/* ---- the worker ----------------------------------------------------- */

typedef struct {
  SmCopyStatus *status;
  const char *path;
} WorkerSave;

static void
worker_save (void *data)
{
  WorkerSave *w = data;

  status_save (w->status, w->path, NULL);
}

static int
worker_main (SmCopyStatus *status, const char *path)
{
  WorkerSave w = { status, path };
  bool ok = copy_layers (status->layers, status->bandwidth, NULL, NULL,
                        worker_save, &w);

  status->state = ok ? SM_COPY_DONE : SM_COPY_FAILED;
  return status_save (status, path, NULL) && ok ? 0 : 1;
}

/* The worker keeps no descriptor of its parent: an inherited lock or QMP
 * socket would outlive the command that started it. */
static void
detach_descriptors (void)
{
  int null = open ("/dev/null", O_RDWR);
  g_autoptr(GDir) d = NULL;
  g_autoptr(GArray) fds = g_array_new (false, false, sizeof (int));
  const char *name;
  size_t i;

  if (null >= 0) {
    dup2 (null, 0);
    dup2 (null, 1);
    dup2 (null, 2);
    if (null > 2)
      close (null);
  }
  d = g_dir_open ("/proc/self/fd", 0, NULL);
  while (d && (name = g_dir_read_name (d))) {
    int fd = atoi (name);

    if (fd > 2)
      g_array_append_val (fds, fd);
  }
  for (i = 0; i < fds->len; i++)
    close (g_array_index (fds, int, i));
}

int
sm_copy_worker_main (const char *status_path, int ready_fd)
{
  g_autoptr(SmCopyStatus) status = status_read (status_path, NULL);
  int32_t me = (int32_t) getpid ();

  if (!status)
    me = 0;
  else {
    status->pid = getpid ();
    status->start_time = process_start_time (status->pid);
    status->state = SM_COPY_RUNNING;
    if (!status_save (status, status_path, NULL))
      me = 0;
  }
  if (write (ready_fd, &me, sizeof me) != sizeof me || me == 0)
    return 1;
  close (ready_fd);
  detach_descriptors ();
  return worker_main (status, status_path);
}

/* The worker process, between fork and exec: only async-signal-safe calls.
 * READY_FD gets -errno when the exec fails. */
static void G_GNUC_NORETURN
exec_worker (const char *helper, char *const *argv, int ready_fd)
{
  int32_t err;
  int sig;

  /* The caller's handlers go at exec; what it ignored or blocked would
   * stay: the worker starts with every signal at its default. */
  for (sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      signal (sig, SIG_DFL);
  {
    sigset_t none;

    sigemptyset (&none);
    sigprocmask (SIG_SETMASK, &none, NULL);
  }
  if (fcntl (ready_fd, F_SETFD, 0) == 0)
    execvp (helper, argv);
  err = -errno;
  if (write (ready_fd, &err, sizeof err) < 0)
    _exit (127);
  _exit (127);
}

bool
sm_copy_worker_spawn (GPtrArray *copies, uint64_t bandwidth,
                      const char *status_path, pid_t *pid, GError **error)
{
  g_autoptr(SmCopyStatus) status = status_new (copies);
  g_autofree char *helper = sm_helper_path ();
  g_autofree char *fd_arg = NULL;
  char *argv[7];
  int pfd[2];
  pid_t child;
  int wstatus;
  int32_t got = 0;
  ssize_t n;

  *pid = 0;
  status->bandwidth = bandwidth;
  if (copies->len == 0) {
    status->state = SM_COPY_DONE;
    return status_save (status, status_path, error);
  }
  status->state = SM_COPY_PENDING;
  if (!status_save (status, status_path, error))
    return false;
  if (pipe2 (pfd, O_CLOEXEC) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "pipe: %s", g_strerror (errno));
    return false;
  }
  /* The worker is a new snapmig process (`snapmig copy-worker`, the
   * library never forks without exec) that reads its layers and limit
   * from the status saved above. */
  fd_arg = g_strdup_printf ("%d", pfd[1]);
  argv[0] = (char *) "snapmig";
  argv[1] = (char *) "copy-worker";
  argv[2] = (char *) "--status";
  argv[3] = (char *) status_path;
  argv[4] = (char *) "--ready-fd";
  argv[5] = fd_arg;
  argv[6] = NULL;
  fflush (NULL);
  child = fork ();
  if (child < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "fork: %s", g_strerror (errno));
    close (pfd[0]);
    close (pfd[1]);
    return false;
  }
  if (child == 0) {
    pid_t worker;

    /* fork, setsid, fork: the worker is nobody's child, in no terminal's
     * session, and outlives the command. */
    setsid ();
    worker = fork ();
    if (worker != 0)
      _exit (worker < 0 ? 1 : 0);
    exec_worker (helper, argv, pfd[1]);
  }
  close (pfd[1]);
  while (waitpid (child, &wstatus, 0) < 0 && errno == EINTR)
    ;
  do
    n = read (pfd[0], &got, sizeof got);
  while (n < 0 && errno == EINTR);
  close (pfd[0]);
  if (n == sizeof got && got < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "the copy worker did not start: cannot run %s: %s (the "
                 "snapmig binary: snapmig_set_helper or $SNAPMIG_HELPER "
                 "names it)", helper, g_strerror (-got));
    return false;
  }
  if (n != sizeof got || got <= 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "the copy worker did not start (%s copy-worker, status %s)",
                 helper, status_path);
    return false;
  }
  *pid = (pid_t) got;
  return true;
}

bool
sm_copy_worker_kill (const char *status_path, int timeout_ms, GError **error)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmCopyStatus) status = sm_copy_status_load (status_path, &err);
  gint64 deadline;

  if (!status) {
    if (g_error_matches (err, SM_ERROR, SM_ERROR_NOT_FOUND))
      return true;
    g_propagate_error (error, g_steal_pointer (&err));
    return false;
  }
  if (status->pid <= 0 ||
      process_start_time (status->pid) != status->start_time)
    return true;
  if (kill (status->pid, SIGKILL) < 0 && errno != ESRCH) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "cannot stop the copy worker %d: %s", (int) status->pid,
                 g_strerror (errno));
    return false;
  }
  deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  while (process_start_time (status->pid) == status->start_time) {
    if (timeout_ms >= 0 && g_get_monotonic_time () > deadline) {
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "the copy worker %d did not stop in time",
                   (int) status->pid);
      return false;
    }
    g_usleep (5000);
  }
  return true;
}
