/* stream-copy — the durable floor of a file copy on this machine, for
 * bench/lsm.sh: the data extents of each SRC written to its DST and made
 * durable, nothing else (no image format, no QEMU, no status file).
 *
 *   stream-copy [--direct] [--cfr] [--threads N] [--window MIB]
 *               SRC DST [SRC DST...]
 *
 * Default method ("streaming"): N threads (default 2) take the pairs in
 * turn; each reads its source's data extents (SEEK_DATA/SEEK_HOLE, holes
 * stay holes) window by window (default 16 MiB), writes each window with
 * buffered pwrite(), starts its writeback at once (sync_file_range WRITE),
 * then waits for the window behind it to reach the disk and drops its pages
 * (posix_fadvise DONTNEED): at most two windows per thread are dirty.  The
 * file ends with fdatasync(), the directory of each DST with fsync().
 *
 * --cfr: each window copied by copy_file_range() (in the kernel, as
 * snapmig's layer copy does) instead of pread() + pwrite().
 *
 * --direct: the same, written with O_DIRECT one 2 MiB request at a time
 * (what snapmig's layer copy did to files before issue 10; --window sets
 * the request size) and fdatasync().
 *
 * A DST that is a block device is written in place (not truncated), its
 * ranges under the source's holes left as they are (a floor, not a copy
 * tool).  Prints the wall time in seconds on stdout.
 */
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <glib.h>

static bool opt_direct;
static bool opt_cfr;
static int opt_threads = 2;
static int opt_window_mib = 16;
static bool opt_window_set;
static char **pairs;
static int npairs;
static int next_pair;
static GMutex lock;

static void
die (const char *what, const char *file)
{
  fprintf (stderr, "stream-copy: %s: %s: %s\n", file, what, strerror (errno));
  exit (1);
}

static void
copy_file (const char *src_path, const char *dst_path)
{
  size_t window = (size_t) opt_window_mib << 20;
  int src = open (src_path, O_RDONLY);
  int dst;
  struct stat st, dst_st;
  char *buf;
  off_t off = 0, prev_off = -1, prev_len = 0;
  bool device;

  if (src < 0 || fstat (src, &st) < 0)
    die ("open", src_path);
  device = stat (dst_path, &dst_st) == 0 && S_ISBLK (dst_st.st_mode);
  dst = open (dst_path, O_WRONLY | O_CREAT | (device ? 0 : O_TRUNC) |
                        (opt_direct ? O_DIRECT : 0), 0644);
  if (dst < 0)
    die ("open", dst_path);
  if (!device && ftruncate (dst, st.st_size) < 0)
    die ("truncate", dst_path);
  if (opt_direct && !opt_window_set)
    window = 2 << 20;
  if (posix_memalign ((void **) &buf, 4096, window) != 0)
    die ("memory", src_path);
  while (off < st.st_size) {
    off_t data = lseek (src, off, SEEK_DATA), hole;

    if (data < 0 && errno == ENXIO)
      break;
    hole = data < 0 ? -1 : lseek (src, data, SEEK_HOLE);
    if (hole < 0)
      die ("lseek", src_path);
    for (off = data; off < hole;) {
      size_t n = (size_t) MIN ((off_t) window, hole - off);
      ssize_t got, put = 0;

      if (opt_cfr && !opt_direct) {
        for (got = 0; got < (ssize_t) n;) {
          loff_t in = off + got, out = off + got;
          ssize_t w = copy_file_range (src, &in, dst, &out, n - got, 0);

          if (w <= 0)
            die ("copy_file_range", dst_path);
          got += w;
        }
        put = got;
      } else
        got = pread (src, buf, n, off);

      if (got <= 0)
        die ("read", src_path);
      if (opt_direct && got % 4096)
        got = (got + 4095) / 4096 * 4096;  /* the end of a qcow2 file */
      while (put < got) {
        ssize_t w = pwrite (dst, buf + put, (size_t) (got - put), off + put);

        if (w <= 0)
          die ("write", dst_path);
        put += w;
      }
      if (!opt_direct) {
        sync_file_range (dst, off, got, SYNC_FILE_RANGE_WRITE);
        if (prev_off >= 0) {
          sync_file_range (dst, prev_off, prev_len,
                           SYNC_FILE_RANGE_WAIT_BEFORE |
                           SYNC_FILE_RANGE_WRITE |
                           SYNC_FILE_RANGE_WAIT_AFTER);
          posix_fadvise (dst, prev_off, prev_len, POSIX_FADV_DONTNEED);
        }
        prev_off = off;
        prev_len = got;
      }
      off += got;
    }
  }
  if (opt_direct && !device && ftruncate (dst, st.st_size) < 0)
    die ("truncate", dst_path);
  if (fdatasync (dst) < 0)
    die ("fdatasync", dst_path);
  if (prev_off >= 0)
    posix_fadvise (dst, prev_off, prev_len, POSIX_FADV_DONTNEED);
  close (dst);
  close (src);
  free (buf);
  if (!device) {
    g_autofree char *dir = g_path_get_dirname (dst_path);
    int d = open (dir, O_RDONLY | O_DIRECTORY);

    if (d < 0 || fsync (d) < 0)
      die ("fsync", dir);
    close (d);
  }
}

static gpointer
worker (gpointer unused)
{
  (void) unused;
  for (;;) {
    int i;

    g_mutex_lock (&lock);
    i = next_pair++;
    g_mutex_unlock (&lock);
    if (i >= npairs)
      return NULL;
    copy_file (pairs[2 * i], pairs[2 * i + 1]);
  }
}

int
main (int argc, char **argv)
{
  GThread *threads[64];
  struct timespec a, b;
  int i = 1, n;

  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp (argv[i], "--direct") == 0)
      opt_direct = true;
    else if (strcmp (argv[i], "--cfr") == 0)
      opt_cfr = true;
    else if (strcmp (argv[i], "--threads") == 0 && i + 1 < argc)
      { opt_threads = atoi (argv[++i]); opt_threads = CLAMP (opt_threads, 1, 64); }
    else if (strcmp (argv[i], "--window") == 0 && i + 1 < argc)
      { opt_window_set = true; opt_window_mib = atoi (argv[++i]); opt_window_mib = CLAMP (opt_window_mib, 1, 1024); }
    else
      break;
  }
  if (argc - i < 2 || (argc - i) % 2) {
    fprintf (stderr, "usage: stream-copy [--direct] [--cfr] [--threads N] "
                     "[--window MIB] SRC DST [SRC DST...]\n");
    return 2;
  }
  pairs = argv + i;
  npairs = (argc - i) / 2;
  n = MIN (opt_threads, npairs);
  clock_gettime (CLOCK_MONOTONIC, &a);
  for (i = 0; i < n; i++)
    threads[i] = g_thread_new ("copy", worker, NULL);
  for (i = 0; i < n; i++)
    g_thread_join (threads[i]);
  clock_gettime (CLOCK_MONOTONIC, &b);
  printf ("%.3f\n", (double) (b.tv_sec - a.tv_sec) +
                    (double) (b.tv_nsec - a.tv_nsec) / 1e9);
  return 0;
}
