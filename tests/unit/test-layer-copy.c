/* Unit tests for lib/layer-copy.c against real images made with qemu-img:
 * a layer copy keeps exactly the layer's data (guest view compared with
 * qemu-img compare, holes kept), gets its planned relative backing name and
 * stated format; the detached worker reports progress and errors in its
 * status file, is recognised as dead when it died (and not when it finished
 * between the reader's look at its status and at its PID), and is killed by
 * abort.
 * Block device destinations (oVirt's LVs) are loop devices over files
 * filled with garbage: the source's holes must read as zeros on them.
 * The windowed write path is checked on a file larger than a window and a
 * chunk, whose data and holes cross both and whose size is no multiple of
 * anything; the --bandwidth limit through its pure schedule and the
 * worker's recorded limit (no timing assertions).
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>

#include "harness.h"
#include "helper.h"
#include "image.h"
#include "layer-copy.h"
#include "qmp.h"

static uint64_t
allocated (const char *path)
{
  struct stat st;

  g_assert_cmpint (stat (path, &st), ==, 0);
  return (uint64_t) st.st_blocks * 512;
}

static bool
qemu_io (const char *fmt, const char *cmd, const char *img)
{
  const char *argv[] = { "qemu-io", "-f", fmt, "-c", cmd, img, NULL };

  return sm_test_run (argv, NULL, false);
}

/* True while PID exists and is not a zombie. */
static bool
process_alive (pid_t pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  g_autofree char *text = NULL;
  const char *p;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return false;
  p = strrchr (text, ')');
  return p && p[2] != 'Z' && p[2] != 'X';
}

typedef struct {
  char *dir, *a, *b;
  char *base, *mid, *raw;          /* sources in A */
  char *dbase, *dmid, *draw;       /* destinations in B, pre-created */
} Fixture;

static void
setup (Fixture *f, gconstpointer data)
{
  g_autofree char *abs_base = NULL;

  (void) data;
  f->dir = sm_test_tmpdir ();
  f->a = g_build_filename (f->dir, "A", NULL);
  f->b = g_build_filename (f->dir, "B", NULL);
  g_assert_cmpint (mkdir (f->a, 0700), ==, 0);
  g_assert_cmpint (mkdir (f->b, 0700), ==, 0);
  f->base = g_build_filename (f->a, "base.qcow2", NULL);
  f->mid = g_build_filename (f->a, "mid.qcow2", NULL);
  f->raw = g_build_filename (f->a, "disk.raw", NULL);
  f->dbase = g_build_filename (f->b, "base.qcow2", NULL);
  f->dmid = g_build_filename (f->b, "mid.qcow2", NULL);
  f->draw = g_build_filename (f->b, "disk.raw", NULL);

  g_assert_true (sm_test_create_qcow2 (f->base, 64 << 20, NULL, NULL));
  g_assert_true (qemu_io ("qcow2", "write -P 0x11 0 3M", f->base));
  g_assert_true (qemu_io ("qcow2", "write -P 0x12 40M 1M", f->base));
  /* The source names its backing file by an absolute path: the copy must
   * get the relative name the plan asks for. */
  g_assert_true (sm_test_create_qcow2 (f->mid, 0, f->base, "qcow2"));
  g_assert_true (qemu_io ("qcow2", "write -P 0x21 1M 1M", f->mid));
  g_assert_true (qemu_io ("qcow2", "write -z 2M 64K", f->mid));
  g_assert_true (sm_test_create_raw (f->raw, 64 << 20));
  g_assert_true (qemu_io ("raw", "write -P 0x31 0 1M", f->raw));
  g_assert_true (qemu_io ("raw", "write -P 0x32 48M 1M", f->raw));

  g_assert_true (sm_test_create_qcow2 (f->dbase, 64 << 20, NULL, NULL));
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-u", "-F",
                                   "qcow2", "-b", "base.qcow2", f->dmid, "64M",
                                   NULL));
  g_assert_true (sm_test_create_raw (f->draw, 64 << 20));
}

static void
teardown (Fixture *f, gconstpointer data)
{
  (void) data;
  g_free (f->dir); g_free (f->a); g_free (f->b);
  g_free (f->base); g_free (f->mid); g_free (f->raw);
  g_free (f->dbase); g_free (f->dmid); g_free (f->draw);
}

static GPtrArray *
copies (const Fixture *f)
{
  GPtrArray *c = g_ptr_array_new_with_free_func (
    (GDestroyNotify) sm_layer_copy_free);

  g_ptr_array_add (c, sm_layer_copy_new ("vda", f->mid, f->dmid,
                                         SM_IMAGE_FORMAT_QCOW2, "base.qcow2",
                                         SM_IMAGE_FORMAT_QCOW2));
  g_ptr_array_add (c, sm_layer_copy_new ("vda", f->base, f->dbase,
                                         SM_IMAGE_FORMAT_QCOW2, NULL,
                                         SM_IMAGE_FORMAT_LAST));
  g_ptr_array_add (c, sm_layer_copy_new ("vdb", f->raw, f->draw,
                                         SM_IMAGE_FORMAT_RAW, NULL,
                                         SM_IMAGE_FORMAT_LAST));
  return c;
}

static void
progress_cb (uint64_t done, uint64_t total, void *opaque)
{
  uint64_t *last = opaque;

  g_assert_cmpuint (done, <=, total);
  g_assert_cmpuint (done, >=, *last);
  *last = done;
}

static void
check_copies (const Fixture *f)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmImageInfo) info = sm_image_probe (f->dmid, SM_IMAGE_FORMAT_QCOW2,
                                                &err);

  g_assert_no_error (err);
  g_assert_cmpstr (info->backing_file, ==, "base.qcow2");
  g_assert_cmpstr (info->backing_format, ==, "qcow2");
  /* The guest view through each chain is the same... */
  g_assert_true (sm_test_qemu_img ("compare", "-q", "-f", "qcow2", "-F",
                                   "qcow2", f->mid, f->dmid, NULL));
  g_assert_true (sm_test_qemu_img ("compare", "-q", "-f", "raw", "-F", "raw",
                                   f->raw, f->draw, NULL));
  /* ...and the mid layer alone holds only its own data: its zero cluster
   * still hides the base's 0x11 there. */
  g_assert_true (sm_test_image_read_pattern (f->dmid, "qcow2", 0x00, 2 << 20,
                                             64 << 10));
  g_assert_true (sm_test_image_read_pattern (f->dmid, "qcow2", 0x21, 1 << 20,
                                             1 << 20));
  /* Holes stay holes. */
  g_assert_cmpuint (allocated (f->draw), <=, allocated (f->raw) + (1 << 20));
  g_assert_cmpuint (allocated (f->dbase), <=, allocated (f->base) + (1 << 20));
  g_assert_true (sm_test_qemu_img ("check", "-q", f->dmid, NULL));
}

static void
test_copy_run (Fixture *f, gconstpointer data)
{
  g_autoptr(GPtrArray) c = copies (f);
  g_autoptr(GError) err = NULL;
  size_t i;

  (void) data;
  for (i = 0; i < c->len; i++) {
    uint64_t last = 0;

    g_assert_true (sm_layer_copy_run (c->pdata[i], progress_cb, &last, &err));
    g_assert_no_error (err);
    g_assert_cmpuint (last, >, 0);
  }
  check_copies (f);
}

static void
test_copy_missing_dest (Fixture *f, gconstpointer data)
{
  g_autofree char *nowhere = g_build_filename (f->b, "none.qcow2", NULL);
  g_autoptr(SmLayerCopy) c = sm_layer_copy_new ("vda", f->base, nowhere,
                                                SM_IMAGE_FORMAT_QCOW2, NULL,
                                                SM_IMAGE_FORMAT_LAST);
  g_autoptr(GError) err = NULL;

  (void) data;
  g_assert_false (sm_layer_copy_run (c, NULL, NULL, &err));
  g_assert_nonnull (err);
  g_assert_nonnull (strstr (err->message, nowhere));
  g_assert_false (g_file_test (nowhere, G_FILE_TEST_EXISTS));
}

/* Polls the status file until the worker is no longer running. */
static SmCopyStatus *
wait_worker (const char *path)
{
  gint64 deadline = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;

  for (;;) {
    g_autoptr(GError) err = NULL;
    g_autoptr(SmCopyStatus) st = sm_copy_status_load (path, &err);

    g_assert_no_error (err);
    if (st->state == SM_COPY_DONE || st->state == SM_COPY_FAILED)
      return g_steal_pointer (&st);
    g_assert_cmpint (g_get_monotonic_time (), <, deadline);
    g_usleep (10000);
  }
}

static void
test_worker (Fixture *f, gconstpointer data)
{
  g_autoptr(GPtrArray) c = copies (f);
  g_autofree char *status = g_build_filename (f->dir, "copy.json", NULL);
  g_autoptr(GError) err = NULL;
  g_autoptr(SmCopyStatus) st = NULL;
  pid_t pid = 0;
  size_t i;

  (void) data;
  g_assert_true (sm_copy_worker_spawn (c, 0, status, &pid, &err));
  g_assert_no_error (err);
  g_assert_cmpint (pid, >, 0);
  /* The worker is not our child: it was detached. */
  g_assert_cmpint (waitpid (pid, NULL, WNOHANG), ==, -1);
  st = wait_worker (status);
  g_assert_cmpint (st->state, ==, SM_COPY_DONE);
  g_assert_cmpint (st->pid, ==, pid);
  g_assert_cmpuint (st->layers->len, ==, 3);
  for (i = 0; i < st->layers->len; i++) {
    const SmCopyStatusLayer *l = st->layers->pdata[i];

    g_assert_cmpint (l->state, ==, SM_COPY_DONE);
    g_assert_cmpuint (l->done, ==, l->total);
    g_assert_null (l->error);
  }
  check_copies (f);
  /* Killing a finished worker is fine. */
  g_assert_true (sm_copy_worker_kill (status, 5000, &err));
}

static void
test_worker_failure (Fixture *f, gconstpointer data)
{
  g_autoptr(GPtrArray) c = g_ptr_array_new_with_free_func (
    (GDestroyNotify) sm_layer_copy_free);
  g_autofree char *status = g_build_filename (f->dir, "copy.json", NULL);
  g_autofree char *nowhere = g_build_filename (f->b, "none.qcow2", NULL);
  g_autoptr(GError) err = NULL;
  g_autoptr(SmCopyStatus) st = NULL;
  const SmCopyStatusLayer *l;
  pid_t pid;

  (void) data;
  g_ptr_array_add (c, sm_layer_copy_new ("vda", f->base, nowhere,
                                         SM_IMAGE_FORMAT_QCOW2, NULL,
                                         SM_IMAGE_FORMAT_LAST));
  g_ptr_array_add (c, sm_layer_copy_new ("vdb", f->raw, f->draw,
                                         SM_IMAGE_FORMAT_RAW, NULL,
                                         SM_IMAGE_FORMAT_LAST));
  g_assert_true (sm_copy_worker_spawn (c, 0, status, &pid, &err));
  st = wait_worker (status);
  g_assert_cmpint (st->state, ==, SM_COPY_FAILED);
  l = st->layers->pdata[0];
  g_assert_cmpint (l->state, ==, SM_COPY_FAILED);
  g_assert_nonnull (strstr (l->error, nowhere));
  /* The other layer is copied all the same. */
  l = st->layers->pdata[1];
  g_assert_cmpint (l->state, ==, SM_COPY_DONE);
}

static void
test_dead_and_killed_worker (Fixture *f, gconstpointer data)
{
  g_autofree char *status = g_build_filename (f->dir, "copy.json", NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(SmCopyStatus) st = NULL;
  pid_t dead = fork ();

  (void) data;
  if (dead == 0)
    _exit (0);
  g_assert_cmpint (waitpid (dead, NULL, 0), ==, dead);
  text = g_strdup_printf ("{\"pid\": %d, \"start-time\": 42, \"state\": "
                          "\"running\", \"layers\": [{\"disk\": \"vda\", "
                          "\"source\": \"%s\", \"dest\": \"%s\", \"format\": "
                          "\"qcow2\", \"state\": \"running\", \"done\": 1, "
                          "\"total\": 2}]}", (int) dead, f->base, f->dbase);
  g_assert_true (g_file_set_contents (status, text, -1, NULL));
  st = sm_copy_status_load (status, &err);
  g_assert_no_error (err);
  g_assert_cmpint (st->state, ==, SM_COPY_FAILED);
  g_assert_nonnull (strstr (((SmCopyStatusLayer *) st->layers->pdata[0])->error,
                            "died"));
  /* A PID that is not the recorded process is never killed. */
  g_assert_true (sm_copy_worker_kill (status, 1000, &err));
  g_assert_no_error (err);

  /* A real worker, killed at once: it is gone afterwards. */
  {
    g_autoptr(GPtrArray) c = copies (f);
    pid_t pid;

    g_assert_true (sm_copy_worker_spawn (c, 0, status, &pid, &err));
    g_assert_true (sm_copy_worker_kill (status, 5000, &err));
    g_assert_no_error (err);
    g_clear_pointer (&st, sm_copy_status_free);
    st = sm_copy_status_load (status, &err);
    g_assert_no_error (err);
    g_assert_cmpint (st->state, !=, SM_COPY_RUNNING);
    g_assert_false (process_alive (pid));
  }
}

/* ---- the copy-status race -------------------------------------------- */

/* A worker saves its final status, then exits.  A reader that read the
 * status while it still said "running" and looks at the worker's PID only
 * after the worker finished must read the status again instead of calling
 * the worker dead.  To put the worker's last save exactly between the read
 * and the look at the PID, this program interposes g_file_get_contents()
 * (libsnapmig is linked statically into it, so the library's calls come
 * here): reading /proc/RACE_PID/stat — the liveness check of the PID —
 * first rewrites the status file to RACE_TEXT, as the worker would have
 * just before it exited. */
static struct {
  pid_t pid;
  const char *status_path, *text;
  int fired;
} race;

gboolean
g_file_get_contents (const gchar *filename, gchar **contents, gsize *length,
                     GError **error)
{
  static gboolean (*real) (const gchar *, gchar **, gsize *, GError **);

  if (!real)
    real = (gboolean (*) (const gchar *, gchar **, gsize *, GError **))
           dlsym (RTLD_NEXT, "g_file_get_contents");
  g_assert_nonnull (real);
  if (race.pid > 0) {
    g_autofree char *proc = g_strdup_printf ("/proc/%d/stat", (int) race.pid);

    if (strcmp (filename, proc) == 0 && race.fired++ == 0)
      g_assert_true (g_file_set_contents (race.status_path, race.text, -1,
                                          NULL));
  }
  return real (filename, contents, length, error);
}

/* A status document of one layer copy; the layer's state is the worker's. */
static char *
status_text (pid_t pid, const char *state, const Fixture *f)
{
  return g_strdup_printf ("{\"pid\": %d, \"start-time\": 42, \"state\": "
                          "\"%s\", \"layers\": [{\"disk\": \"vda\", "
                          "\"source\": \"%s\", \"dest\": \"%s\", \"format\": "
                          "\"qcow2\", \"state\": \"%s\", \"done\": %d, "
                          "\"total\": 2}]}", (int) pid, state, f->base,
                          f->dbase, state, strcmp (state, "done") ? 1 : 2);
}

static void
test_status_race (Fixture *f, gconstpointer data)
{
  g_autofree char *status = g_build_filename (f->dir, "copy.json", NULL);
  g_autofree char *running = NULL;
  g_autofree char *done = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(SmCopyStatus) st = NULL;
  const SmCopyStatusLayer *l;
  pid_t gone = fork ();

  (void) data;
  if (gone == 0)
    _exit (0);
  g_assert_cmpint (waitpid (gone, NULL, 0), ==, gone);
  running = status_text (gone, "running", f);
  done = status_text (gone, "done", f);
  g_assert_true (g_file_set_contents (status, running, -1, NULL));
  race.pid = gone;
  race.status_path = status;
  race.text = done;
  race.fired = 0;
  st = sm_copy_status_load (status, &err);
  race.pid = 0;
  g_assert_no_error (err);
  /* The interleaving happened: the PID was looked at, after the read. */
  g_assert_cmpint (race.fired, >=, 1);
  g_assert_cmpint (st->state, ==, SM_COPY_DONE);
  l = st->layers->pdata[0];
  g_assert_cmpint (l->state, ==, SM_COPY_DONE);
  g_assert_cmpuint (l->done, ==, 2);
  g_assert_null (l->error);

  /* The same status left as "running" by a worker that is gone (it died
   * before its last save) is still a dead worker. */
  g_clear_pointer (&st, sm_copy_status_free);
  g_assert_true (g_file_set_contents (status, running, -1, NULL));
  st = sm_copy_status_load (status, &err);
  g_assert_no_error (err);
  g_assert_cmpint (st->state, ==, SM_COPY_FAILED);
  g_assert_nonnull (strstr (((SmCopyStatusLayer *) st->layers->pdata[0])->error,
                            "died"));
}

/* ---- block device destinations -------------------------------------- */

#define GARBAGE 0xab

/* A loop device of SIZE bytes (a multiple of 512) over a file in DIR
 * holding GARBAGE bytes only: an LV's old contents, which must not show
 * through the holes of a layer copied onto it.  Skips the test (returns
 * -1) when loop devices cannot be used here. */
static int
garbage_device (const char *dir, const char *name, uint64_t size, char **dev)
{
  g_autofree char *file = g_build_filename (dir, name, NULL);
  g_autofree char *bytes = g_malloc (size);
  int fd;

  memset (bytes, GARBAGE, size);
  g_assert_true (g_file_set_contents (file, bytes, (gssize) size, NULL));
  fd = sm_test_loop_attach (file, dev);
  if (fd < 0)
    g_test_skip ("no loop device available: block device destinations not "
                 "tested");
  return fd;
}

/* LEN bytes at OFF of FD; caller frees. */
static char *
read_at (int fd, uint64_t off, uint64_t len)
{
  char *buf = g_malloc (len);

  g_assert_cmpint (pread (fd, buf, len, (off_t) off), ==, (ssize_t) len);
  return buf;
}

static uint64_t
file_size (const char *path)
{
  struct stat st;

  g_assert_cmpint (stat (path, &st), ==, 0);
  return (uint64_t) st.st_size;
}

/* Asserts that DEV_FD holds SOURCE's bytes from FROM to its end and that
 * the TAIL bytes after them still hold the device's garbage. */
static void
assert_device_holds (int dev_fd, const char *source, uint64_t from,
                     uint64_t tail)
{
  g_autofree char *want = NULL;
  g_autofree char *have = NULL;
  g_autofree char *rest = NULL;
  gsize size;
  uint64_t i;

  g_assert_true (g_file_get_contents (source, &want, &size, NULL));
  g_assert_cmpuint (from, <, size);
  have = read_at (dev_fd, from, size - from);
  g_assert_cmpmem (have, size - from, want + from, size - from);
  if (tail == 0)
    return;
  rest = read_at (dev_fd, size, tail);
  for (i = 0; i < tail; i++)
    if ((unsigned char) rest[i] != GARBAGE)
      g_error ("byte %" PRIu64 " past the layer was overwritten", size + i);
}

/* A qcow2 layer made with preallocation=metadata: its L2 tables point at
 * clusters that are holes in the file, so on a device left with its old
 * data there the guest would read that data; and a raw layer with holes,
 * whose size is not a multiple of 4 KiB (the end of the last hole is
 * zeroed by writing). */
static void
test_block_device (Fixture *f, gconstpointer data)
{
  g_autofree char *src = g_build_filename (f->a, "prealloc.qcow2", NULL);
  g_autofree char *raw = g_build_filename (f->a, "odd.raw", NULL);
  g_autofree char *link = g_build_filename (f->b, "prealloc.qcow2", NULL);
  g_autofree char *dev = NULL;
  g_autofree char *raw_dev = NULL;
  g_autoptr(GError) err = NULL;
  uint64_t size, raw_size = (8 << 20) + 512, last = 0;
  int fd, raw_fd;

  (void) data;
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o",
                                   "preallocation=metadata", src, "16M",
                                   NULL));
  g_assert_true (qemu_io ("qcow2", "write -P 0x41 1M 1M", src));
  g_assert_true (qemu_io ("qcow2", "write -P 0x42 9M 512K", src));
  size = file_size (src);
  g_assert_cmpuint (allocated (src), <, size / 2);
  fd = garbage_device (f->dir, "lv.img", size + (1 << 20), &dev);
  if (fd < 0)
    return;
  /* oVirt links the LV into the domain's image directory. */
  g_assert_cmpint (symlink (dev, link), ==, 0);
  {
    g_autoptr(SmLayerCopy) c = sm_layer_copy_new ("vda", src, link,
                                                  SM_IMAGE_FORMAT_QCOW2, NULL,
                                                  SM_IMAGE_FORMAT_LAST);

    g_assert_true (sm_layer_copy_run (c, progress_cb, &last, &err));
    g_assert_no_error (err);
    g_assert_cmpuint (last, >, 0);
  }
  g_assert_true (sm_test_qemu_img ("compare", "-q", "-f", "qcow2", "-F",
                                   "qcow2", src, link, NULL));
  g_assert_true (sm_test_qemu_img ("check", "-q", "-f", "qcow2", link, NULL));
  g_assert_true (sm_test_image_read_pattern (link, "qcow2", 0x41, 1 << 20,
                                             1 << 20));
  g_assert_true (sm_test_image_read_pattern (link, "qcow2", 0x42, 9 << 20,
                                             512 << 10));
  g_assert_true (sm_test_image_read_pattern (link, "qcow2", 0x00, 2 << 20,
                                             7 << 20));
  /* The file's bytes exactly, holes as zeros; past them the device is left
   * alone. */
  assert_device_holds (fd, src, 0, 1 << 20);

  g_assert_true (sm_test_create_raw (raw, raw_size));
  g_assert_true (qemu_io ("raw", "write -P 0x51 0 64K", raw));
  g_assert_true (qemu_io ("raw", "write -P 0x52 5M 3000", raw));
  raw_fd = garbage_device (f->dir, "raw-lv.img", raw_size, &raw_dev);
  g_assert_cmpint (raw_fd, >=, 0);
  {
    g_autoptr(SmLayerCopy) c = sm_layer_copy_new ("vdb", raw, raw_dev,
                                                  SM_IMAGE_FORMAT_RAW, NULL,
                                                  SM_IMAGE_FORMAT_LAST);

    g_assert_true (sm_layer_copy_run (c, NULL, NULL, &err));
    g_assert_no_error (err);
  }
  g_assert_true (sm_test_qemu_img ("compare", "-q", "-f", "raw", "-F", "raw",
                                   raw, raw_dev, NULL));
  g_assert_true (sm_test_image_read_pattern (raw_dev, "raw", 0x52, 5 << 20,
                                             3000));
  g_assert_true (sm_test_image_read_pattern (raw_dev, "raw", 0x00,
                                             (5 << 20) + 3000,
                                             raw_size - (5 << 20) - 3000));
  assert_device_holds (raw_fd, raw, 0, 0);
  close (raw_fd);
  close (fd);
}

/* A device smaller than the source file is refused before anything is
 * written to it, with both sizes in the message. */
static void
test_block_device_too_small (Fixture *f, gconstpointer data)
{
  g_autofree char *dev = NULL;
  g_autofree char *before = NULL;
  g_autofree char *after = NULL;
  g_autofree char *dev_size = NULL;
  g_autofree char *need = NULL;
  g_autoptr(SmLayerCopy) c = NULL;
  g_autoptr(GError) err = NULL;
  uint64_t size = 1 << 20;
  int fd;

  (void) data;
  fd = garbage_device (f->dir, "small.img", size, &dev);
  if (fd < 0)
    return;
  g_assert_cmpuint (file_size (f->raw), >, size);
  before = read_at (fd, 0, size);
  c = sm_layer_copy_new ("vdb", f->raw, dev, SM_IMAGE_FORMAT_RAW, NULL,
                         SM_IMAGE_FORMAT_LAST);
  g_assert_false (sm_layer_copy_run (c, NULL, NULL, &err));
  g_assert_nonnull (err);
  dev_size = g_strdup_printf ("%" PRIu64 " bytes", size);
  need = g_strdup_printf ("%" PRIu64, file_size (f->raw));
  if (!strstr (err->message, dev) || !strstr (err->message, "too small") ||
      !strstr (err->message, dev_size) || !strstr (err->message, need))
    g_error ("unclear error: %s", err->message);
  after = read_at (fd, 0, size);
  g_assert_cmpmem (after, size, before, size);
  close (fd);
}

/* The detached worker copies onto a device as well, next to regular files:
 * the mid layer goes to an LV linked into place, and gets its relative
 * backing name there. */
static void
test_block_device_worker (Fixture *f, gconstpointer data)
{
  g_autoptr(GPtrArray) c = NULL;
  g_autofree char *status = g_build_filename (f->dir, "copy.json", NULL);
  g_autofree char *dev = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(SmCopyStatus) st = NULL;
  pid_t pid;
  size_t i;
  int fd;

  (void) data;
  fd = garbage_device (f->dir, "lv.img", 16 << 20, &dev);
  if (fd < 0)
    return;
  g_assert_cmpint (unlink (f->dmid), ==, 0);
  g_assert_cmpint (symlink (dev, f->dmid), ==, 0);
  c = copies (f);
  g_assert_true (sm_copy_worker_spawn (c, 0, status, &pid, &err));
  g_assert_no_error (err);
  st = wait_worker (status);
  g_assert_cmpint (st->state, ==, SM_COPY_DONE);
  for (i = 0; i < st->layers->len; i++) {
    const SmCopyStatusLayer *l = st->layers->pdata[i];

    g_assert_cmpint (l->state, ==, SM_COPY_DONE);
    g_assert_cmpuint (l->done, ==, l->total);
  }
  check_copies (f);
  /* Byte for byte after the first cluster, which holds the backing name
   * the copy rewrote; the mid layer's file has holes (between its
   * metadata and its data clusters). */
  g_assert_cmpuint (allocated (f->mid), <, file_size (f->mid));
  assert_device_holds (fd, f->mid, 64 << 10,
                       (16 << 20) - file_size (f->mid));
  close (fd);
}


/* ---- the windowed write path ---------------------------------------- */

#define MiB ((uint64_t) 1 << 20)

/* Data ranges of the big source (the rest are holes): across the 16 MiB
 * windows and the 64 MiB chunks, with unaligned ends, and a tail that
 * ends the file at no multiple of 512. */
static const struct { uint64_t off, len; } big_data[] = {
  { 0, 5 * MiB },
  { 14 * MiB, 20 * MiB + 777 },
  { 63 * MiB + 100, 3 * MiB },
  { 70 * MiB, 4321 },
};
#define BIG_SIZE (70 * MiB + 4321)

/* Writes the big source at PATH: random data (fixed seed) in big_data. */
static void
write_big_source (const char *path)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (10);
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  size_t i;

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ftruncate (fd, (off_t) BIG_SIZE), ==, 0);
  for (i = 0; i < G_N_ELEMENTS (big_data); i++) {
    g_autofree guint32 *buf = g_malloc (big_data[i].len + 4);
    size_t j;

    for (j = 0; j < big_data[i].len / 4 + 1; j++)
      buf[j] = g_rand_int (rand);
    g_assert_cmpint (pwrite (fd, buf, big_data[i].len,
                             (off_t) big_data[i].off), ==,
                     (ssize_t) big_data[i].len);
  }
  g_assert_cmpint (close (fd), ==, 0);
}

/* Asserts that the first SIZE bytes of A and B are equal. */
static void
assert_same_bytes (const char *a, const char *b, uint64_t size)
{
  int fa = open (a, O_RDONLY), fb = open (b, O_RDONLY);
  uint64_t off;

  g_assert_cmpint (fa, >=, 0);
  g_assert_cmpint (fb, >=, 0);
  for (off = 0; off < size; off += MiB) {
    uint64_t n = MIN (MiB, size - off);
    g_autofree char *x = read_at (fa, off, n);
    g_autofree char *y = read_at (fb, off, n);

    if (memcmp (x, y, n) != 0)
      g_error ("%s and %s differ in the MiB at %" PRIu64, a, b, off);
  }
  close (fa);
  close (fb);
}

/* A file destination holds the source byte for byte, at the source's size,
 * and keeps its holes (the ranges between big_data, minus the blocks the
 * data's unaligned ends share). */
static void
test_windows (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (dir, "big.raw", NULL);
  g_autofree char *dst = g_build_filename (dir, "copy.raw", NULL);
  g_autoptr(SmLayerCopy) c = NULL;
  g_autoptr(GError) err = NULL;
  uint64_t last = 0;
  size_t i;
  int fd;

  write_big_source (src);
  /* The destination held something else before, longer than the layer. */
  g_assert_true (sm_test_create_raw (dst, 100 * MiB));
  g_assert_true (qemu_io ("raw", "write -P 0x55 0 100M", dst));
  c = sm_layer_copy_new ("vda", src, dst, SM_IMAGE_FORMAT_RAW, NULL,
                         SM_IMAGE_FORMAT_LAST);
  g_assert_true (sm_layer_copy_run (c, progress_cb, &last, &err));
  g_assert_no_error (err);
  g_assert_cmpuint (file_size (dst), ==, BIG_SIZE);
  assert_same_bytes (src, dst, BIG_SIZE);
  /* No more blocks than the source's data (give or take the file
   * system's own: an extent tree block), far less than the size. */
  g_assert_cmpuint (allocated (dst), <=, allocated (src) + MiB);
  fd = open (dst, O_RDONLY);
  g_assert_cmpint (fd, >=, 0);
  for (i = 0; i + 1 < G_N_ELEMENTS (big_data); i++) {
    /* The hole after big_data[i], shrunk to whole MiBs. */
    off_t from = (off_t) ((big_data[i].off + big_data[i].len) / MiB + 1) *
                 (off_t) MiB;
    off_t to = (off_t) (big_data[i + 1].off / MiB * MiB);

    g_assert_cmpint (lseek (fd, from, SEEK_DATA), >=, to);
  }
  close (fd);
}

/* The same source onto a block device (O_DIRECT, its unaligned tail
 * through the page cache): the device holds its bytes, zeros under its
 * holes, and its garbage after its end. */
static void
test_windows_block_device (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (dir, "big.raw", NULL);
  g_autofree char *dev = NULL;
  g_autofree char *tail = NULL;
  g_autoptr(SmLayerCopy) c = NULL;
  g_autoptr(GError) err = NULL;
  uint64_t dev_size = 72 * MiB;
  size_t i;
  int fd;

  write_big_source (src);
  fd = garbage_device (dir, "lv.img", dev_size, &dev);
  if (fd < 0)
    return;
  c = sm_layer_copy_new ("vda", src, dev, SM_IMAGE_FORMAT_RAW, NULL,
                         SM_IMAGE_FORMAT_LAST);
  g_assert_true (sm_layer_copy_run (c, NULL, NULL, &err));
  g_assert_no_error (err);
  /* Through a new descriptor: what the device holds, not our cache. */
  assert_same_bytes (src, dev, BIG_SIZE);
  tail = read_at (fd, BIG_SIZE, dev_size - BIG_SIZE);
  for (i = 0; i < dev_size - BIG_SIZE; i++)
    g_assert_cmpint ((guchar) tail[i], ==, GARBAGE);
  close (fd);
}

/* ---- the rate limit ------------------------------------------------- */

/* The schedule of --bandwidth: byte B may be written B / RATE seconds
 * after the start, in steps of about a quarter of a second's worth. */
static void
test_rate_schedule (void)
{
  uint64_t rate = 4 * MiB, step, bytes, t, slept;

  /* No limit: no wait, whole windows. */
  g_assert_cmpuint (sm_copy_rate_delay_us (1ULL << 40, 0, 0), ==, 0);
  g_assert_cmpuint (sm_copy_rate_step (0), ==, 16 * MiB);
  /* Steps: a quarter of the rate, 4 KiB-aligned, within 64 KiB..16 MiB. */
  g_assert_cmpuint (sm_copy_rate_step (4 * MiB), ==, MiB);
  g_assert_cmpuint (sm_copy_rate_step (1000 * 1000), ==, 249856);
  g_assert_cmpuint (sm_copy_rate_step (100), ==, 64 << 10);
  g_assert_cmpuint (sm_copy_rate_step (1ULL << 40), ==, 16 * MiB);
  /* 10 MiB let through at 1 MiB/s: due at 10 s. */
  g_assert_cmpuint (sm_copy_rate_delay_us (10 * MiB, MiB, 2000000), ==,
                    8000000);
  g_assert_cmpuint (sm_copy_rate_delay_us (10 * MiB, MiB, 10000000), ==, 0);
  g_assert_cmpuint (sm_copy_rate_delay_us (10 * MiB, MiB, 12000000), ==, 0);
  g_assert_cmpuint (sm_copy_rate_delay_us (0, MiB, 0), ==, 0);
  /* No overflow: 1 PiB at 1 byte/s is due in 2^50 s. */
  g_assert_cmpuint (sm_copy_rate_delay_us (1ULL << 50, 1, 0), ==,
                    (1ULL << 50) * 1000000);
  /* A copy that writes instantly, following the schedule step by step:
   * 64 MiB at 4 MiB/s ends (its last step starts) at 15.75 s, never ahead
   * of the limit. */
  step = sm_copy_rate_step (rate);
  for (bytes = 0, t = 0, slept = 0; bytes < 64 * MiB; bytes += step) {
    uint64_t d = sm_copy_rate_delay_us (bytes, rate, t);

    t += d;
    slept += d;
    g_assert_cmpuint (bytes * 1000000 / rate, <=, t);
  }
  g_assert_cmpuint (t, ==, 15750000);
  g_assert_cmpuint (slept, ==, t);
}

/* The worker records its limit in its status, where `status` and the
 * tests read it; a worker without one records none. */
static void
test_worker_bandwidth (Fixture *f, gconstpointer data)
{
  g_autoptr(GPtrArray) c = copies (f);
  g_autofree char *status = g_build_filename (f->dir, "copy.json", NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(SmCopyStatus) st = NULL;
  pid_t pid;

  (void) data;
  g_assert_true (sm_copy_worker_spawn (c, 1ULL << 30, status, &pid, &err));
  g_assert_no_error (err);
  st = wait_worker (status);
  g_assert_cmpint (st->state, ==, SM_COPY_DONE);
  g_assert_cmpuint (st->bandwidth, ==, 1ULL << 30);
  g_assert_true (g_file_get_contents (status, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"bandwidth\":1073741824"));
  check_copies (f);
}

int
main (int argc, char **argv)
{
  g_autofree char *top = NULL;
  g_autofree char *snapmig = NULL;

  g_test_init (&argc, &argv, NULL);
  /* The worker is `snapmig copy-worker`: the tree's binary. */
  top = sm_test_source_tree ("cli/snapmig", NULL);
  snapmig = g_build_filename (top, "cli", "snapmig", NULL);
  sm_helper_set_path (snapmig);
  g_test_add ("/layer-copy/run", Fixture, NULL, setup, test_copy_run,
              teardown);
  g_test_add ("/layer-copy/missing-dest", Fixture, NULL, setup,
              test_copy_missing_dest, teardown);
  g_test_add ("/layer-copy/worker", Fixture, NULL, setup, test_worker,
              teardown);
  g_test_add ("/layer-copy/worker-failure", Fixture, NULL, setup,
              test_worker_failure, teardown);
  g_test_add ("/layer-copy/dead-and-killed", Fixture, NULL, setup,
              test_dead_and_killed_worker, teardown);
  g_test_add ("/layer-copy/status-race", Fixture, NULL, setup,
              test_status_race, teardown);
  g_test_add ("/layer-copy/block-device", Fixture, NULL, setup,
              test_block_device, teardown);
  g_test_add ("/layer-copy/block-device-too-small", Fixture, NULL, setup,
              test_block_device_too_small, teardown);
  g_test_add ("/layer-copy/block-device-worker", Fixture, NULL, setup,
              test_block_device_worker, teardown);
  g_test_add_func ("/layer-copy/windows", test_windows);
  g_test_add_func ("/layer-copy/windows-block-device",
                   test_windows_block_device);
  g_test_add_func ("/layer-copy/rate-schedule", test_rate_schedule);
  g_test_add ("/layer-copy/worker-bandwidth", Fixture, NULL, setup,
              test_worker_bandwidth, teardown);
  return g_test_run ();
}
