/* bench/gen-domain — writes a storage domain for bench/validate.sh:
 *
 *   gen-domain DIR CHAINS LAYERS
 *
 * makes DIR/images/cNNNNN/l0.qcow2 ... l{LAYERS-1}.qcow2 for each chain,
 * each layer backed by the one below it with a relative name and the format
 * stated, as snapmig writes them.  The images are small but complete qcow2
 * v3 files written natively (512-byte clusters: header, refcount table,
 * refcount block, L1 table — 2 KiB each), so that QEMU opens them too and
 * ten thousand of them take seconds, not the minutes qemu-img would.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib.h>

#define CLUSTER_BITS 9
#define CLUSTER (1u << CLUSTER_BITS)
#define VIRTUAL_SIZE (1u << 20)
#define N_CLUSTERS 4             /* header, refcount table, block, L1 */

static void
put32 (uint8_t *p, uint32_t v)
{
  v = GUINT32_TO_BE (v);
  memcpy (p, &v, 4);
}

static void
put64 (uint8_t *p, uint64_t v)
{
  v = GUINT64_TO_BE (v);
  memcpy (p, &v, 8);
}

static void
put16 (uint8_t *p, uint16_t v)
{
  v = GUINT16_TO_BE (v);
  memcpy (p, &v, 2);
}

/* Fills BUF (N_CLUSTERS * CLUSTER bytes) with a qcow2 image backed by
 * BACKING (qcow2), or none when BACKING is NULL. */
static void
make_image (uint8_t *buf, const char *backing)
{
  /* L2 tables of 64 entries cover 32 KiB each. */
  const uint32_t l1_size = VIRTUAL_SIZE / (CLUSTER * (CLUSTER / 8));
  uint32_t off = 104;
  unsigned i;

  memset (buf, 0, N_CLUSTERS * CLUSTER);
  memcpy (buf, "QFI\xfb", 4);
  put32 (buf + 4, 3);                          /* version */
  put32 (buf + 20, CLUSTER_BITS);
  put64 (buf + 24, VIRTUAL_SIZE);
  put32 (buf + 36, l1_size);
  put64 (buf + 40, 3 * CLUSTER);               /* L1 table */
  put64 (buf + 48, 1 * CLUSTER);               /* refcount table */
  put32 (buf + 56, 1);                         /* its clusters */
  put32 (buf + 96, 4);                         /* 16-bit refcounts */
  put32 (buf + 100, 104);                      /* header length */
  if (backing) {
    size_t len = strlen (backing);

    /* Backing format extension, then the end marker, then the name. */
    put32 (buf + off, 0xE2792ACA);
    put32 (buf + off + 4, 5);
    memcpy (buf + off + 8, "qcow2", 5);
    off += 16;
    off += 8;                                  /* end of extensions */
    put64 (buf + 8, off);
    put32 (buf + 16, (uint32_t) len);
    memcpy (buf + off, backing, len);
  }
  put64 (buf + CLUSTER, 2 * CLUSTER);          /* refcount block */
  for (i = 0; i < N_CLUSTERS; i++)
    put16 (buf + 2 * CLUSTER + 2 * i, 1);
}

static int
write_file (const char *path, const uint8_t *buf, size_t len)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ssize_t n;

  if (fd < 0) {
    fprintf (stderr, "gen-domain: %s: %s\n", path, strerror (errno));
    return -1;
  }
  n = write (fd, buf, len);
  if (n != (ssize_t) len || close (fd) < 0) {
    fprintf (stderr, "gen-domain: %s: write failed\n", path);
    return -1;
  }
  return 0;
}

int
main (int argc, char **argv)
{
  uint8_t buf[N_CLUSTERS * CLUSTER];
  unsigned long chains, layers, c, l;
  g_autofree char *images = NULL;

  if (argc != 4) {
    fprintf (stderr, "usage: gen-domain DIR CHAINS LAYERS\n");
    return 2;
  }
  chains = strtoul (argv[2], NULL, 10);
  layers = strtoul (argv[3], NULL, 10);
  if (!chains || !layers) {
    fprintf (stderr, "gen-domain: CHAINS and LAYERS must be positive\n");
    return 2;
  }
  images = g_build_filename (argv[1], "images", NULL);
  if (g_mkdir_with_parents (images, 0755) < 0) {
    fprintf (stderr, "gen-domain: %s: %s\n", images, strerror (errno));
    return 1;
  }
  for (c = 0; c < chains; c++) {
    g_autofree char *dir = g_strdup_printf ("%s/c%05lu", images, c);

    if (mkdir (dir, 0755) < 0 && errno != EEXIST) {
      fprintf (stderr, "gen-domain: %s: %s\n", dir, strerror (errno));
      return 1;
    }
    for (l = 0; l < layers; l++) {
      g_autofree char *path = g_strdup_printf ("%s/l%lu.qcow2", dir, l);
      g_autofree char *backing = l ? g_strdup_printf ("l%lu.qcow2", l - 1)
                                   : NULL;

      make_image (buf, backing);
      if (write_file (path, buf, sizeof buf) < 0)
        return 1;
    }
  }
  return 0;
}
