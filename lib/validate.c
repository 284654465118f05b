/* libsnapmig — `snapmig validate`: storage domain checks (see validate.h).
 *
 * One pass over each domain (readdir + fstatat, one open of each regular
 * file for its magic, one header probe of each qcow2 image) fills three
 * tables: real path -> image, (dev, inode) -> image, directory -> real
 * directory.  Everything after the walk — backing names, the state
 * directory's records and snapshot metadata, the VMs' files — is resolved against those tables, so the cost
 * is a few system calls per file whatever the shape of the chains.
 *
 * Finding codes (stable, for scripts):
 *   error    unreadable, header-invalid, not-qcow2, corrupt,
 *            unknown-incompatible-features, backing-escapes,
 *            backing-missing, backing-not-image, backing-format-mismatch,
 *            backing-cycle, chain-too-deep, data-file-escapes,
 *            data-file-missing, vm-disk-no-domain
 *   warning  dirty, backing-format-missing, backing-format-unknown,
 *            backing-format-raw-has-magic, backing-absolute, overlay-smaller,
 *            raw-size-mismatch, symlink-escapes, symlink-dangling,
 *            record-invalid, snapshot-metadata-invalid,
 *            leftover-interrupted, leftover-interrupted-in-use,
 *            directory-too-deep
 *   info     in-use, vm-disk-domain, leftover-unused, move-in-progress,
 *            raw-stated
 */
#include "validate.h"
#include "migrate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "json-util.h"
#include "precreate.h"
#include "report-json.h"
#include "snapshot-xml.h"

#define DOMAIN "validate"

/* QEMU refuses deeper chains too (it has no fixed limit, but snapmig's
 * chain walker stops at 256, lib/image.h), and a directory tree deeper
 * than this is not a storage domain. */
#define MAX_CHAIN 256
#define MAX_DIR_DEPTH 64

static const char qcow2_magic[4] = { 'Q', 'F', 'I', (char) 0xfb };

static const char *const severity_names[] = {
  [SM_SEVERITY_INFO] = "info",
  [SM_SEVERITY_WARNING] = "warning",
  [SM_SEVERITY_ERROR] = "error",
};
G_STATIC_ASSERT (G_N_ELEMENTS (severity_names) == SM_SEVERITY_LAST);

const char *
sm_severity_to_string (SmSeverity severity)
{
  if ((unsigned) severity >= SM_SEVERITY_LAST)
    return NULL;
  return severity_names[severity];
}

/* One file found by the walk (or a block device named by a link). */
typedef struct Img Img;
struct Img {
  char *path;                  /* display: given domain + relative path */
  char *real;                  /* real path (a block device: its link) */
  guint domain;                /* index into Ctx.given */
  bool is_image;               /* false: a plain file, an image only when
                                  something names it as backing */
  bool has_magic;               /* read as qcow2 (false once a VM or an
                                  overlay states it raw) */
  char *raw_by;                /* who states it raw although it starts
                                  with the qcow2 magic ("VM ADDR", "image
                                  PATH"): its "header" is guest data */
  bool named_qcow2;
  bool is_block;
  char *device;                /* is_block: the device node (a link's
                                  target, or the node itself) */
  SmImageFormat format;
  SmImageInfo *info;           /* qcow2 header, or NULL */
  bool header_ok;
  uint64_t virtual_size;
  uint64_t file_size;
  Img *backing;                /* resolved backing image, or NULL */
  Img *data_img;               /* external data file, or NULL */
  char *backing_path;          /* what the backing name resolves to */
  bool link_broken;            /* names a backing file that is unusable */
  bool size_problem;           /* overlay-smaller / raw-size-mismatch */
  unsigned referrers;
  bool in_cycle;
  bool live;
  bool used_by_vm;
  const char *open_by;         /* address of a given VM that has it open */
  char *op_journal;            /* journal of the interrupted operation that
                                  created it, or NULL */
  char *op_what;               /* that operation ("create of snapshot S") */
  char *op_vm;                 /* its VM's QMP address */
  char *op_recover;            /* the command that finishes or undoes it */
  char *move;                  /* snapshot of the move in progress whose
                                  files include it, or NULL */
  char *move_vm;
  GPtrArray *used_by;          /* char * */
  int color;                   /* cycle search */
};

typedef enum {
  LINK_OTHER,                  /* a directory or a file not walked */
  LINK_ALIAS,
  LINK_ESCAPES,
  LINK_DANGLING,
} LinkState;

typedef struct {
  char *path;
  char *real;                  /* the link's own path (parent resolved) */
  guint domain;
  LinkState state;
  char *target;                /* realpath of the target, or NULL */
} Link;

typedef struct {
  dev_t dev;
  ino_t ino;
} DevIno;

typedef struct {
  const SmValidateOptions *opts;
  GPtrArray *given;            /* char *: domains as given */
  GPtrArray *lexical;          /* char *: given, absolute, canonical */
  GPtrArray *real;             /* char *: realpath of each domain */
  GHashTable *paths;           /* real path -> Img * (not owned) */
  GHashTable *link_paths;      /* real path of a link -> Link * */
  GHashTable *inodes;          /* DevIno * -> Img * */
  GHashTable *dirs;            /* directory -> real directory or NULL */
  GPtrArray *imgs;             /* Img *, owned */
  GPtrArray *links;            /* Link *, owned */
  GPtrArray *findings;         /* SmFinding *, owned */
} Ctx;

static void
img_free (Img *img)
{
  g_free (img->raw_by);
  if (!img)
    return;
  g_free (img->path);
  g_free (img->real);
  g_free (img->device);
  sm_image_info_free (img->info);
  g_free (img->backing_path);
  g_free (img->op_journal);
  g_free (img->op_what);
  g_free (img->op_vm);
  g_free (img->op_recover);
  g_free (img->move);
  g_free (img->move_vm);
  g_ptr_array_unref (img->used_by);
  g_free (img);
}

static void
link_free (Link *link)
{
  g_free (link->path);
  g_free (link->real);
  g_free (link->target);
  g_free (link);
}

static void
finding_free (SmFinding *f)
{
  if (!f)
    return;
  g_free (f->code);
  g_free (f->file);
  g_free (f->message);
  g_free (f->fix);
  g_free (f->vm);
  g_free (f->disk);
  g_free (f);
}

static guint
dev_ino_hash (gconstpointer p)
{
  const DevIno *k = p;

  return (guint) (k->ino * 2654435761u) ^ (guint) k->dev;
}

static gboolean
dev_ino_equal (gconstpointer a, gconstpointer b)
{
  const DevIno *x = a, *y = b;

  return x->dev == y->dev && x->ino == y->ino;
}

static void
ctx_clear (Ctx *c)
{
  g_clear_pointer (&c->given, g_ptr_array_unref);
  g_clear_pointer (&c->lexical, g_ptr_array_unref);
  g_clear_pointer (&c->real, g_ptr_array_unref);
  g_clear_pointer (&c->paths, g_hash_table_unref);
  g_clear_pointer (&c->link_paths, g_hash_table_unref);
  g_clear_pointer (&c->inodes, g_hash_table_unref);
  g_clear_pointer (&c->dirs, g_hash_table_unref);
  g_clear_pointer (&c->imgs, g_ptr_array_unref);
  g_clear_pointer (&c->links, g_ptr_array_unref);
  g_clear_pointer (&c->findings, g_ptr_array_unref);
}

static void add_finding (Ctx *c, SmSeverity severity, const char *code,
                         const char *file, const char *vm, const char *disk,
                         const char *fix, const char *fmt, ...)
  G_GNUC_PRINTF (8, 9);

static void
add_finding (Ctx *c, SmSeverity severity, const char *code, const char *file,
             const char *vm, const char *disk, const char *fix,
             const char *fmt, ...)
{
  SmFinding *f = g_new0 (SmFinding, 1);
  va_list ap;

  va_start (ap, fmt);
  f->message = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  f->severity = severity;
  f->code = g_strdup (code);
  f->file = g_strdup (file);
  f->vm = g_strdup (vm);
  f->disk = g_strdup (disk);
  f->fix = g_strdup (fix);
  sm_debug (DOMAIN, "%s %s: %s", severity_names[severity], code, f->message);
  g_ptr_array_add (c->findings, f);
}

/* ---- paths ------------------------------------------------------------ */

static bool
path_is_inside (const char *path, const char *root)
{
  size_t n = strlen (root);

  if (strcmp (root, "/") == 0)
    return path[0] == '/';
  return strncmp (path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Index of the domain whose real root holds the real path PATH, or -1.
 * The innermost wins when domains nest. */
static int
real_domain_of (const Ctx *c, const char *path)
{
  size_t best_len = 0;
  int best = -1;
  guint i;

  for (i = 0; i < c->real->len; i++) {
    const char *root = c->real->pdata[i];
    size_t n = strlen (root);

    if (path_is_inside (path, root) && (best < 0 || n > best_len)) {
      best = (int) i;
      best_len = n;
    }
  }
  return best;
}

/* True when the lexical path PATH lies in a domain, named either by its
 * real path or as the user gave it. */
static bool
lexically_inside (const Ctx *c, const char *path)
{
  guint i;

  if (real_domain_of (c, path) >= 0)
    return true;
  for (i = 0; i < c->lexical->len; i++)
    if (path_is_inside (path, c->lexical->pdata[i]))
      return true;
  return false;
}

/* realpath of directory DIR, cached; NULL when it does not resolve.  The
 * walk seeds the cache with every directory it entered, so the usual
 * backing name ("base.qcow2", "../IMG/VOL") costs no system call. */
static const char *
real_dir (Ctx *c, const char *dir)
{
  gpointer value;
  char *r;

  if (g_hash_table_lookup_extended (c->dirs, dir, NULL, &value))
    return value;
  r = realpath (dir, NULL);
  if (r) {
    char *copy = g_strdup (r);

    free (r);
    r = copy;
  }
  g_hash_table_insert (c->dirs, g_strdup (dir), r);
  return r;
}

typedef enum {
  RES_OK,
  RES_ESCAPES,                 /* outside every domain: never touched */
  RES_NOT_LOCAL,               /* json: or PROTOCOL: name */
  RES_MISSING,
  RES_NOT_IMAGE,               /* exists but walk did not take it */
  RES_BAD_NAME,                /* names a directory ("x/..", "") */
} ResStatus;

/* Resolves NAME (relative to the real directory BASE_DIR, or absolute) to
 * a walked file without opening anything.  *RESOLVED gets the path it
 * names (caller frees), for messages.  See the top of validate.h. */
static ResStatus
resolve_name (Ctx *c, const char *base_dir, const char *name, Img **out,
              char **resolved)
{
  g_autofree char *joined = NULL;
  g_autofree char *lexical = NULL;
  g_autofree char *dir = NULL;
  g_autofree char *key = NULL;
  const char *slash, *base, *rdir;
  Img *img;
  Link *link;
  struct stat st;

  *out = NULL;
  *resolved = NULL;
  if (!sm_image_backing_is_local (name)) {
    *resolved = g_strdup (name);
    return RES_NOT_LOCAL;
  }
  if (g_path_is_absolute (name) || !base_dir)
    joined = g_strdup (name);
  else
    joined = g_strconcat (base_dir, "/", name, NULL);
  if (!g_path_is_absolute (joined)) {
    *resolved = g_strdup (joined);
    return RES_BAD_NAME;
  }
  lexical = g_canonicalize_filename (joined, "/");
  if (!lexically_inside (c, lexical)) {
    *resolved = g_steal_pointer (&lexical);
    return RES_ESCAPES;
  }

  slash = strrchr (joined, '/');
  base = slash + 1;
  if (!*base || strcmp (base, ".") == 0 || strcmp (base, "..") == 0) {
    *resolved = g_steal_pointer (&lexical);
    return RES_BAD_NAME;
  }
  dir = slash == joined ? g_strdup ("/") : g_strndup (joined, slash - joined);
  /* The kernel applies ".." after symlinks, so a lexically inside name can
   * still leave the domain through a link: the real directory decides. */
  rdir = real_dir (c, dir);
  if (!rdir) {
    *resolved = g_steal_pointer (&lexical);
    return RES_MISSING;
  }
  key = strcmp (rdir, "/") == 0 ? g_strconcat ("/", base, NULL)
                                : g_strconcat (rdir, "/", base, NULL);
  if (real_domain_of (c, rdir) < 0) {
    *resolved = g_steal_pointer (&key);
    return RES_ESCAPES;
  }
  img = g_hash_table_lookup (c->paths, key);
  if (img) {
    *out = img;
    *resolved = g_strdup (img->path);
    return RES_OK;
  }
  link = g_hash_table_lookup (c->link_paths, key);
  if (link) {
    switch (link->state) {
    case LINK_ESCAPES:
      *resolved = g_strdup (link->target);
      return RES_ESCAPES;
    case LINK_DANGLING:
      *resolved = g_steal_pointer (&key);
      return RES_MISSING;
    case LINK_ALIAS:
    case LINK_OTHER:
    default:
      *resolved = g_strdup (link->target ? link->target : key);
      return RES_NOT_IMAGE;
    }
  }
  /* Inside a domain: looking is safe. */
  if (lstat (key, &st) < 0) {
    *resolved = g_steal_pointer (&key);
    return RES_MISSING;
  }
  *resolved = g_steal_pointer (&key);
  return RES_NOT_IMAGE;
}

/* ---- the walk --------------------------------------------------------- */

static bool
has_suffix_ci (const char *name, const char *suffix)
{
  size_t n = strlen (name), m = strlen (suffix);

  return n > m && g_ascii_strcasecmp (name + n - m, suffix) == 0;
}

static bool
named_like_image (const char *name)
{
  static const char *const exts[] = {
    ".img", ".raw", ".qcow2", ".qcow", ".disk", ".iso",
  };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (exts); i++)
    if (has_suffix_ci (name, exts[i]))
      return true;
  return false;
}

static bool
named_like_qcow2 (const char *name)
{
  return has_suffix_ci (name, ".qcow2") || has_suffix_ci (name, ".qcow");
}

static Img *
img_new (Ctx *c, const char *path, const char *real, guint domain,
         const struct stat *st)
{
  Img *img = g_new0 (Img, 1);
  DevIno *key = g_new (DevIno, 1);

  img->path = g_strdup (path);
  img->real = g_strdup (real);
  img->domain = domain;
  img->format = SM_IMAGE_FORMAT_RAW;
  img->header_ok = true;
  img->used_by = g_ptr_array_new_with_free_func (g_free);
  key->dev = st->st_dev;
  key->ino = st->st_ino;
  g_hash_table_insert (c->inodes, key, img);
  g_hash_table_insert (c->paths, g_strdup (img->real), img);
  g_ptr_array_add (c->imgs, img);
  return img;
}

/* Reads the header of a qcow2 image (magic already seen). */
static void
probe_qcow2 (Ctx *c, Img *img)
{
  g_autoptr(GError) err = NULL;

  img->format = SM_IMAGE_FORMAT_QCOW2;
  img->info = sm_image_probe (img->path, SM_IMAGE_FORMAT_QCOW2, &err);
  if (!img->info) {
    img->header_ok = false;
    add_finding (c, SM_SEVERITY_ERROR, "header-invalid", img->path, NULL,
                 NULL, "restore the image from a backup, or remove it if "
                 "nothing uses it",
                 "%s: the qcow2 header does not parse: %s", img->path,
                 err->message);
    return;
  }
  img->virtual_size = img->info->virtual_size;
}

static void
add_file (Ctx *c, int dfd, const char *name, const struct stat *st,
          const char *real, const char *path, guint domain)
{
  DevIno key = { st->st_dev, st->st_ino };
  Img *img = g_hash_table_lookup (c->inodes, &key);
  char magic[4];
  ssize_t n;
  int fd;

  if (img) {
    /* A hard link (or the same file reached from two domains): one image
     * under its first name, found under both. */
    if (!g_hash_table_contains (c->paths, real))
      g_hash_table_insert (c->paths, g_strdup (real), img);
    return;
  }
  img = img_new (c, path, real, domain, st);
  img->file_size = (uint64_t) st->st_size;
  img->virtual_size = img->file_size;
  img->named_qcow2 = named_like_qcow2 (name);
  img->is_image = named_like_image (name);

  /* A file named like qcow2 is read as qcow2 straight away: one open
   * instead of two in the common case.  Only when that fails does the
   * magic tell a damaged header from a file that is no qcow2 at all. */
  if (img->named_qcow2) {
    img->info = sm_image_probe (path, SM_IMAGE_FORMAT_QCOW2, NULL);
    if (img->info) {
      img->has_magic = true;
      img->format = SM_IMAGE_FORMAT_QCOW2;
      img->virtual_size = img->info->virtual_size;
      return;
    }
  }

  /* O_NOFOLLOW | O_NONBLOCK: whatever replaced the file since fstatat, a
   * link is not followed and a FIFO does not block us. */
  fd = openat (dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
               | O_NOCTTY);
  if (fd < 0) {
    if (img->is_image) {
      img->header_ok = false;
      add_finding (c, SM_SEVERITY_ERROR, "unreadable", path, NULL, NULL,
                   "check its permissions", "%s: cannot open: %s", path,
                   g_strerror (errno));
    }
    return;
  }
  do
    n = pread (fd, magic, sizeof magic, 0);
  while (n < 0 && errno == EINTR);
  close (fd);
  img->has_magic = n == (ssize_t) sizeof magic
    && memcmp (magic, qcow2_magic, 4) == 0;
  if (img->has_magic) {
    img->is_image = true;
    probe_qcow2 (c, img);
  } else if (img->named_qcow2) {
    img->header_ok = false;
    add_finding (c, SM_SEVERITY_ERROR, "not-qcow2", path, NULL, NULL,
                 "if it is a raw image, rename it (*.img) and state format "
                 "raw wherever it is used; otherwise restore it",
                 "%s: named like a qcow2 image but has no qcow2 magic", path);
  }
}

static bool
is_other_root (const Ctx *c, const char *real, guint domain)
{
  guint i;

  for (i = 0; i < c->real->len; i++)
    if (i != domain && strcmp (c->real->pdata[i], real) == 0)
      return true;
  return false;
}

static void probe_block (Ctx *c, Img *img);

/* Walks directory DFD (consumed) whose real path is REAL. */
static void
walk_dir (Ctx *c, int dfd, const char *real, const char *path, guint domain,
          unsigned depth)
{
  DIR *d = fdopendir (dfd);
  struct dirent *de;

  if (!d) {
    add_finding (c, SM_SEVERITY_ERROR, "unreadable", path, NULL, NULL,
                 "check its permissions", "%s: cannot read the directory: %s",
                 path, g_strerror (errno));
    close (dfd);
    return;
  }
  while ((de = readdir (d))) {
    const char *name = de->d_name;
    g_autofree char *creal = NULL;
    g_autofree char *cpath = NULL;
    struct stat st;

    if (name[0] == '.')
      continue;
    creal = strcmp (real, "/") == 0 ? g_strconcat ("/", name, NULL)
                                    : g_strconcat (real, "/", name, NULL);
    cpath = g_strconcat (path, "/", name, NULL);
    if (fstatat (dirfd (d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno != ENOENT)
        add_finding (c, SM_SEVERITY_ERROR, "unreadable", cpath, NULL, NULL,
                     "check its permissions", "%s: cannot stat: %s", cpath,
                     g_strerror (errno));
      continue;
    }
    if (S_ISDIR (st.st_mode)) {
      int sub;

      /* A nested domain given on its own is walked as its own domain. */
      if (is_other_root (c, creal, domain))
        continue;
      if (depth >= MAX_DIR_DEPTH) {
        add_finding (c, SM_SEVERITY_WARNING, "directory-too-deep", cpath,
                     NULL, NULL, NULL, "%s: more than %d directory levels "
                     "deep; not walked", cpath, MAX_DIR_DEPTH);
        continue;
      }
      sub = openat (dirfd (d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW
                    | O_CLOEXEC);
      if (sub < 0) {
        add_finding (c, SM_SEVERITY_ERROR, "unreadable", cpath, NULL, NULL,
                     "check its permissions", "%s: cannot open the "
                     "directory: %s", cpath, g_strerror (errno));
        continue;
      }
      g_hash_table_insert (c->dirs, g_strdup (creal), g_strdup (creal));
      walk_dir (c, sub, creal, cpath, domain, depth + 1);
    } else if (S_ISREG (st.st_mode)) {
      add_file (c, dirfd (d), name, &st, creal, cpath, domain);
    } else if (S_ISLNK (st.st_mode)) {
      Link *link = g_new0 (Link, 1);

      link->path = g_steal_pointer (&cpath);
      link->real = g_steal_pointer (&creal);
      link->domain = domain;
      g_hash_table_insert (c->link_paths, link->real, link);
      g_ptr_array_add (c->links, link);
    } else if (S_ISBLK (st.st_mode)) {
      /* A device node inside the domain itself. */
      DevIno key = { st.st_dev, st.st_ino };

      if (!g_hash_table_lookup (c->inodes, &key)) {
        Img *img = img_new (c, cpath, creal, domain, &st);

        img->is_block = true;
        img->device = g_strdup (creal);
        img->is_image = true;
        probe_block (c, img);
      }
    }
    /* FIFOs, sockets, character devices: not images, never opened. */
  }
  closedir (d);
}

/* Opens a block device named by a link (or found in the domain) for its
 * magic and header. */
static void
probe_block (Ctx *c, Img *img)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmImageInfo) info = NULL;
  char magic[4];
  ssize_t n;
  int fd = open (img->real, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);

  if (fd < 0) {
    img->header_ok = false;
    add_finding (c, SM_SEVERITY_ERROR, "unreadable", img->path, NULL, NULL,
                 "check its permissions", "%s: cannot open the block "
                 "device: %s", img->path, g_strerror (errno));
    return;
  }
  do
    n = pread (fd, magic, sizeof magic, 0);
  while (n < 0 && errno == EINTR);
  close (fd);
  img->has_magic = n == (ssize_t) sizeof magic
    && memcmp (magic, qcow2_magic, 4) == 0;
  if (img->has_magic) {
    probe_qcow2 (c, img);
    if (img->info)
      img->file_size = img->info->file_size;
    return;
  }
  info = sm_image_probe (img->path, SM_IMAGE_FORMAT_RAW, &err);
  if (!info) {
    img->header_ok = false;
    add_finding (c, SM_SEVERITY_ERROR, "unreadable", img->path, NULL, NULL,
                 "check the device", "%s", err->message);
    return;
  }
  img->file_size = img->virtual_size = info->file_size;
}

/* Symbolic links: an alias of a walked file, a block device (an image of
 * the domain), or not followed. */
static void
resolve_links (Ctx *c)
{
  guint i;

  for (i = 0; i < c->links->len; i++) {
    Link *link = c->links->pdata[i];
    char *r = realpath (link->real, NULL);
    struct stat st;
    Img *img;

    if (!r) {
      link->state = LINK_DANGLING;
      add_finding (c, SM_SEVERITY_WARNING, "symlink-dangling", link->path,
                   NULL, NULL, "remove the link if nothing needs it",
                   "%s: symbolic link to a file that does not exist",
                   link->path);
      continue;
    }
    link->target = g_strdup (r);
    free (r);
    if (real_domain_of (c, link->target) >= 0) {
      img = g_hash_table_lookup (c->paths, link->target);
      if (img) {
        link->state = LINK_ALIAS;
        g_hash_table_insert (c->paths, g_strdup (link->real), img);
      }
      continue;
    }
    /* realpath has already looked at the target; lstat only tells what it
     * is and opens nothing. */
    if (lstat (link->target, &st) == 0 && S_ISBLK (st.st_mode)) {
      DevIno key = { st.st_dev, st.st_ino };

      link->state = LINK_ALIAS;
      img = g_hash_table_lookup (c->inodes, &key);
      if (img) {
        g_hash_table_insert (c->paths, g_strdup (link->real), img);
        continue;
      }
      img = img_new (c, link->path, link->real, link->domain, &st);
      img->is_block = true;
      img->device = g_strdup (link->target);
      img->is_image = true;
      probe_block (c, img);
      continue;
    }
    link->state = LINK_ESCAPES;
    add_finding (c, SM_SEVERITY_WARNING, "symlink-escapes", link->path, NULL,
                 NULL, "remove the link, or move its target into the domain",
                 "%s: symbolic link leads outside the storage domains (to "
                 "%s); not followed", link->path, link->target);
  }
}

/* ---- checks ----------------------------------------------------------- */

static char *
img_dir (const Img *img)
{
  const char *slash = strrchr (img->real, '/');

  if (slash == img->real)
    return g_strdup ("/");
  return g_strndup (img->real, slash - img->real);
}

/* The name snapmig would write: relative to the overlay's directory. */
static char *
relative_name (const Img *from, const Img *to)
{
  g_autofree char *dir = img_dir (from);
  g_auto(GStrv) a = g_strsplit (dir, "/", -1);
  g_auto(GStrv) b = g_strsplit (to->real, "/", -1);
  GString *s = g_string_new (NULL);
  guint i = 0, j;

  while (a[i] && b[i] && b[i + 1] && strcmp (a[i], b[i]) == 0)
    i++;
  for (j = i; a[j]; j++)
    if (*a[j])
      g_string_append (s, "../");
  for (j = i; b[j]; j++) {
    g_string_append (s, b[j]);
    if (b[j + 1])
      g_string_append_c (s, '/');
  }
  return g_string_free (s, false);
}

/* ---- formats stated by others ---------------------------------------- */

/* Drops the findings CODE about FILE made before its format was known. */
static void
drop_findings (Ctx *c, const char *file, const char *code)
{
  guint i = 0;

  while (i < c->findings->len) {
    const SmFinding *f = c->findings->pdata[i];

    if (g_strcmp0 (f->file, file) == 0 && strcmp (f->code, code) == 0)
      g_ptr_array_remove_index (c->findings, i);
    else
      i++;
  }
}

/* IMG is raw because BY says so (QEMU opened it as raw, or an overlay
 * states its backing format raw), though its first bytes are the qcow2
 * magic: a guest wrote a qcow2 header into its disk.  That "header" is
 * guest data: never followed, never judged (design.md: formats are never
 * guessed where they are stated). */
static void
demote_to_raw (Ctx *c, Img *img, const char *by)
{
  if (!img->has_magic || img->raw_by)
    return;
  sm_debug (DOMAIN, "%s: raw as %s states, despite the qcow2 magic",
            img->path, by);
  img->raw_by = g_strdup (by);
  img->has_magic = false;
  img->format = SM_IMAGE_FORMAT_RAW;
  g_clear_pointer (&img->info, sm_image_info_free);
  img->header_ok = true;
  drop_findings (c, img->path, "header-invalid");
  if (img->is_block) {
    g_autoptr(SmImageInfo) info = sm_image_probe (img->path,
                                                  SM_IMAGE_FORMAT_RAW, NULL);

    if (info)
      img->file_size = info->file_size;
  }
  img->virtual_size = img->file_size;
  add_finding (c, SM_SEVERITY_INFO, "raw-stated", img->path, NULL, NULL,
               NULL, "%s: starts with a qcow2 header, but %s states it raw: "
               "the header is data (a guest may have written it), not "
               "followed", img->path, by);
}

/* Formats QEMU states for the layers the VMs given have open (query-block's
 * "format"), then the raw backing formats overlays state, win over the
 * content: with --qmp a layer's format is what QEMU says. */
static void
apply_stated_formats (Ctx *c)
{
  size_t v;
  guint d, l, i;

  for (v = 0; v < c->opts->n_vms; v++) {
    const SmValidateVm *vm = c->opts->vms[v];

    for (d = 0; d < vm->disks->len; d++) {
      const SmValidateVmDisk *disk = vm->disks->pdata[d];

      for (l = 0; l < disk->layers->len && disk->formats
                  && l < disk->formats->len; l++) {
        g_autofree char *resolved = NULL;
        g_autofree char *by = NULL;
        Img *img = NULL;

        if (g_strcmp0 (disk->formats->pdata[l], "raw") != 0 ||
            resolve_name (c, NULL, disk->layers->pdata[l], &img, &resolved)
            != RES_OK)
          continue;
        by = g_strdup_printf ("VM %s (disk %s)", vm->address, disk->disk);
        demote_to_raw (c, img, by);
      }
    }
  }
  for (i = 0; i < c->imgs->len; i++) {
    Img *img = c->imgs->pdata[i];
    g_autofree char *dir = NULL;
    g_autofree char *resolved = NULL;
    g_autofree char *by = NULL;
    Img *b = NULL;

    if (!img->info || !img->info->backing_file ||
        g_strcmp0 (img->info->backing_format, "raw") != 0)
      continue;
    dir = img_dir (img);
    if (resolve_name (c, dir, img->info->backing_file, &b, &resolved)
        != RES_OK || b == img)
      continue;
    by = g_strdup_printf ("image %s", img->path);
    demote_to_raw (c, b, by);
  }
}

static void
check_backing (Ctx *c, Img *img)
{
  const SmImageInfo *info = img->info;
  g_autofree char *dir = img_dir (img);
  g_autofree char *resolved = NULL;
  g_autofree char *fix = NULL;
  const char *stated = info->backing_format;
  Img *b = NULL;
  int fmt;

  switch (resolve_name (c, dir, info->backing_file, &b, &resolved)) {
  case RES_ESCAPES:
    img->link_broken = true;
    img->backing_path = g_strdup (resolved);
    add_finding (c, SM_SEVERITY_ERROR, "backing-escapes", img->path, NULL,
                 NULL, "do not let QEMU open this image: a guest may have "
                 "written its header; remove it, or rebase it (qemu-img "
                 "rebase -u) onto an image inside the domain",
                 "%s: backing file '%s' is outside the storage domains "
                 "(%s); it was not opened", img->path, info->backing_file,
                 resolved);
    return;
  case RES_NOT_LOCAL:
    img->link_broken = true;
    add_finding (c, SM_SEVERITY_ERROR, "backing-escapes", img->path, NULL,
                 NULL, "do not let QEMU open this image: a guest may have "
                 "written its header; remove it or rebase it onto an image "
                 "inside the domain",
                 "%s: backing file '%s' is not a file name (json: or a "
                 "protocol) and may name anything; it was not opened",
                 img->path, info->backing_file);
    return;
  case RES_MISSING:
    img->link_broken = true;
    img->backing_path = g_strdup (resolved);
    add_finding (c, SM_SEVERITY_ERROR, "backing-missing", img->path, NULL,
                 NULL, "restore the backing file, or remove this image if "
                 "nothing uses it",
                 "%s: backing file '%s' does not exist (%s)", img->path,
                 info->backing_file, resolved);
    return;
  case RES_BAD_NAME:
  case RES_NOT_IMAGE:
    img->link_broken = true;
    img->backing_path = g_strdup (resolved);
    add_finding (c, SM_SEVERITY_ERROR, "backing-not-image", img->path, NULL,
                 NULL, "rebase the image (qemu-img rebase -u) onto its real "
                 "backing image",
                 "%s: backing file '%s' (%s) is not an image file of the "
                 "domain (a directory, hidden or special file)", img->path,
                 info->backing_file, resolved);
    return;
  case RES_OK:
  default:
    break;
  }

  b->is_image = true;
  img->backing = b;
  img->backing_path = g_strdup (b->path);
  b->referrers++;
  g_ptr_array_add (b->used_by, g_strdup_printf ("image %s", img->path));

  fmt = stated ? sm_image_format_from_string (stated) : -1;
  if (!stated) {
    fix = g_strdup_printf ("qemu-img rebase -u -F %s -b '%s' '%s'",
                           b->has_magic ? "qcow2" : "raw", info->backing_file,
                           img->path);
    add_finding (c, SM_SEVERITY_WARNING, "backing-format-missing", img->path,
                 NULL, NULL, fix, "%s: the format of backing file '%s' is not "
                 "stated: QEMU would probe it, and a guest-written header "
                 "could make it read any host file", img->path,
                 info->backing_file);
  } else if (fmt < 0) {
    add_finding (c, SM_SEVERITY_WARNING, "backing-format-unknown", img->path,
                 NULL, NULL, NULL, "%s: backing file '%s' is stated as '%s', "
                 "a format validate does not check", img->path,
                 info->backing_file, stated);
  } else if (fmt == SM_IMAGE_FORMAT_QCOW2 && !b->has_magic) {
    img->link_broken = true;
    fix = g_strdup_printf ("if '%s' is raw: qemu-img rebase -u -F raw -b "
                           "'%s' '%s'", b->path, info->backing_file,
                           img->path);
    add_finding (c, SM_SEVERITY_ERROR, "backing-format-mismatch", img->path,
                 NULL, NULL, fix, "%s: backing file '%s' is stated as qcow2 "
                 "but %s has no qcow2 header; QEMU cannot open the chain",
                 img->path, info->backing_file, b->path);
  } else if (fmt == SM_IMAGE_FORMAT_RAW && (b->has_magic || b->raw_by)) {
    add_finding (c, SM_SEVERITY_WARNING, "backing-format-raw-has-magic",
                 img->path, NULL, NULL, "if the backing file is really a "
                 "qcow2 image: qemu-img rebase -u -F qcow2 -b NAME IMAGE",
                 "%s: backing file %s is stated as raw but starts with a "
                 "qcow2 header (a guest may have written it; otherwise the "
                 "guest sees qcow2 metadata as data)", img->path, b->path);
  }

  if (g_path_is_absolute (info->backing_file)) {
    g_autofree char *rel = relative_name (img, b);
    g_autofree char *abs_fix =
      g_strdup_printf ("qemu-img rebase -u -F %s -b '%s' '%s'",
                       stated ? stated : (b->has_magic ? "qcow2" : "raw"),
                       rel, img->path);

    add_finding (c, SM_SEVERITY_WARNING, "backing-absolute", img->path, NULL,
                 NULL, abs_fix, "%s: backing file name '%s' is absolute; it "
                 "breaks when the domain moves", img->path,
                 info->backing_file);
  }

  /* Sizes: only meaningful with both headers read. */
  if (!b->header_ok)
    return;
  if (b->has_magic) {
    if (img->virtual_size < b->virtual_size) {
      img->size_problem = true;
      add_finding (c, SM_SEVERITY_WARNING, "overlay-smaller", img->path, NULL,
                   NULL, "if the guest needs the whole disk: qemu-img resize "
                   "the overlay to the backing file's size",
                   "%s: virtual size %" G_GUINT64_FORMAT " is smaller than "
                   "its backing file %s (%" G_GUINT64_FORMAT "); the guest "
                   "loses the end of the disk", img->path, img->virtual_size,
                   b->path, b->virtual_size);
    }
  } else if (b->file_size != img->virtual_size) {
    img->size_problem = true;
    add_finding (c, SM_SEVERITY_WARNING, "raw-size-mismatch", b->path, NULL,
                 NULL, "make the raw image exactly the overlay's virtual size "
                 "(qemu-img resize -f raw), or check which one is wrong",
                 "%s: raw image is %" G_GUINT64_FORMAT " bytes but its "
                 "overlay %s is %" G_GUINT64_FORMAT " bytes", b->path,
                 b->file_size, img->path, img->virtual_size);
  }
}

static void
check_header (Ctx *c, Img *img)
{
  const SmImageInfo *info = img->info;
  g_autofree char *dir = NULL;
  g_autofree char *resolved = NULL;
  Img *ignored;
  ResStatus st;

  if (info->corrupt) {
    img->header_ok = false;
    add_finding (c, SM_SEVERITY_ERROR, "corrupt", img->path, NULL, NULL,
                 "copy the image aside, then qemu-img check -r all; QEMU "
                 "opens it read-only only",
                 "%s: the qcow2 corrupt bit is set", img->path);
  }
  if (info->unknown_incompatible) {
    img->header_ok = false;
    add_finding (c, SM_SEVERITY_ERROR, "unknown-incompatible-features",
                 img->path, NULL, NULL, "open it with the QEMU that wrote "
                 "it, or restore it",
                 "%s: unknown incompatible feature bits 0x%" G_GINT64_MODIFIER
                 "x: no QEMU known to snapmig can open it", img->path,
                 (uint64_t) (info->incompatible_features
                             & ~SM_QCOW2_INCOMPAT_KNOWN));
  }
  if ((info->incompatible_features & SM_QCOW2_INCOMPAT_DIRTY)
      && !img->used_by_vm)
    add_finding (c, SM_SEVERITY_WARNING, "dirty", img->path, NULL, NULL,
                 "qemu-img check -r leaks (with no VM using it)",
                 "%s: the dirty bit is set (lazy refcounts, not closed "
                 "cleanly) and no given VM has it open", img->path);
  if (info->data_file) {
    dir = img_dir (img);
    st = resolve_name (c, dir, info->data_file, &ignored, &resolved);
    if (st == RES_ESCAPES || st == RES_NOT_LOCAL) {
      img->header_ok = false;
      add_finding (c, SM_SEVERITY_ERROR, "data-file-escapes", img->path,
                   NULL, NULL, "do not let QEMU open this image; remove it",
                   "%s: external data file '%s' is outside the storage "
                   "domains; it was not opened", img->path, info->data_file);
    } else if (st == RES_OK) {
      /* Part of the image: neither a chain of its own nor a leftover. */
      img->data_img = ignored;
      ignored->is_image = true;
      ignored->referrers++;
      g_ptr_array_add (ignored->used_by,
                       g_strdup_printf ("image %s", img->path));
    } else {
      img->header_ok = false;
      add_finding (c, SM_SEVERITY_ERROR, "data-file-missing", img->path,
                   NULL, NULL, "restore the data file, or remove the image",
                   "%s: external data file '%s' (%s) is missing or not a "
                   "file of the domain", img->path, info->data_file,
                   resolved);
    }
  }
}

static gint
img_cmp (gconstpointer a, gconstpointer b)
{
  const Img *x = *(Img *const *) a, *y = *(Img *const *) b;

  return strcmp (x->path, y->path);
}

/* Each image has at most one backing image, so a loop is found by
 * following pointers with three colours; reported once, on the loop's
 * first image by name. */
static void
find_cycles (Ctx *c)
{
  g_autoptr(GPtrArray) path = g_ptr_array_new ();
  guint i, j;

  for (i = 0; i < c->imgs->len; i++) {
    Img *x = c->imgs->pdata[i];

    g_ptr_array_set_size (path, 0);
    while (x && x->color == 0) {
      x->color = 1;
      g_ptr_array_add (path, x);
      x = x->backing;
    }
    if (x && x->color == 1) {
      g_autoptr(GString) desc = g_string_new (NULL);
      Img *first = x;
      guint start = 0;

      while (path->pdata[start] != x)
        start++;
      for (j = start; j < path->len; j++) {
        Img *m = path->pdata[j];

        m->in_cycle = true;
        if (strcmp (m->path, first->path) < 0)
          first = m;
        g_string_append_printf (desc, "%s -> ", m->path);
      }
      g_string_append (desc, x->path);
      add_finding (c, SM_SEVERITY_ERROR, "backing-cycle", first->path, NULL,
                   NULL, "rebase one image of the loop (qemu-img rebase -u) "
                   "onto its real backing file",
                   "%s: backing chain loops: %s", first->path, desc->str);
    }
    for (j = 0; j < path->len; j++)
      ((Img *) path->pdata[j])->color = 2;
  }
}

static void
mark_snapshot_file (Ctx *c, const char *file, const char *what)
{
  g_autofree char *resolved = NULL;
  Img *img = NULL;

  if (!file || !g_path_is_absolute (file))
    return;
  if (resolve_name (c, NULL, file, &img, &resolved) != RES_OK)
    return;
  img->is_image = true;
  img->live = true;
  g_ptr_array_add (img->used_by, g_strdup (what));
}

/* STATE/vms/KEY/snapshots/NAME.xml: every file a snapmig snapshot names
 * (its disks' sources and mirror targets) is in use. */
static void
load_snapshots (Ctx *c, const char *vm_dir, const char *key)
{
  g_autofree char *snap_dir = g_build_filename (vm_dir, "snapshots", NULL);
  g_autoptr(GDir) snaps = g_dir_open (snap_dir, 0, NULL);
  const char *name;

  if (!snaps)
    return;
  while ((name = g_dir_read_name (snaps))) {
    g_autofree char *file = NULL;
    g_autofree char *what = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(SmSnapshotDef) def = NULL;
    guint i;

    if (!g_str_has_suffix (name, ".xml"))
      continue;
    file = g_build_filename (snap_dir, name, NULL);
    def = sm_snapshot_parse_file (file, &err);
    if (!def) {
      add_finding (c, SM_SEVERITY_WARNING, "snapshot-metadata-invalid",
                   file, NULL, NULL, "fix or remove the snapshot metadata; "
                   "until then validate cannot tell which images it uses",
                   "unreadable snapmig snapshot metadata: %s", err->message);
      continue;
    }
    what = g_strdup_printf ("snapshot %s/%s", key, def->name);
    for (i = 0; def->disks && i < def->disks->len; i++) {
      const SmSnapshotDisk *disk = def->disks->pdata[i];

      mark_snapshot_file (c, disk->source, what);
      mark_snapshot_file (c, disk->mirror_file, what);
    }
  }
}

/* The images in the domains that the record of created files at PATH
 * lists (files outside the domains or gone do not matter here).  NULL
 * with a record-invalid finding when the record cannot be read. */
static GPtrArray *
record_images (Ctx *c, const char *path)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmCreatedFiles) files = sm_created_files_load (path, &err);
  GPtrArray *imgs;
  const char *const *paths;
  size_t i, n = 0;

  if (!files) {
    if (!g_error_matches (err, SM_ERROR, SM_ERROR_NOT_FOUND))
      add_finding (c, SM_SEVERITY_WARNING, "record-invalid", path, NULL,
                   NULL, "read it and check the files it lists by hand",
                   "%s: cannot read snapmig's record of created files, so "
                   "validate cannot tell whether the files it lists are in "
                   "the domains: %s", path, err->message);
    return NULL;
  }
  imgs = g_ptr_array_new ();
  paths = sm_created_files_paths (files, &n);
  for (i = 0; i < n; i++) {
    g_autofree char *resolved = NULL;
    Img *img = NULL;

    if (resolve_name (c, NULL, paths[i], &img, &resolved) == RES_OK)
      g_ptr_array_add (imgs, img);
  }
  return imgs;
}

/* What an unfinished operation's journal says it was ("create of snapshot
 * S"), or NULL when the operation finished (its last records were written
 * but the journal not yet deleted).  A journal that cannot be read counts
 * as unfinished: `snapmig recover` is then the one to look at it. */
static char *
journal_operation (const char *path, const char *opid)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) records = sm_journal_load (path, &err);
  json_object *header;
  const char *op, *snapshot;
  size_t i, n;

  if (!records) {
    sm_debug (DOMAIN, "journal %s: %s", path, err->message);
    return g_strdup_printf ("operation %s", opid);
  }
  n = json_object_array_length (records);
  for (i = 1; i < n; i++)
    if (g_strcmp0 (sm_json_get_string (json_object_array_get_idx (records, i),
                                       "op-phase"), "done") == 0)
      return NULL;
  header = n ? json_object_array_get_idx (records, 0) : NULL;
  op = sm_json_get_string (header, "op");
  snapshot = sm_json_get_string (sm_json_get_object (header, "info"),
                                 "snapshot");
  if (op && snapshot)
    return g_strdup_printf ("%s of snapshot %s", op, snapshot);
  return g_strdup_printf ("%s %s", op ? op : "operation", opid);
}

/* The records of one VM's state (lib/lsm.h):
 *   - journal/OPID.created, the files operation OPID created, kept while it
 *     runs and, when it was interrupted, until `snapmig recover` (which
 *     lists the OPID.journal files) has undone it.  A record without its
 *     journal belongs to no operation recover would look at;
 *   - with MOVES, lsm/NAME.created, the destination files of move NAME, in
 *     progress until `snapmig pivot` or `snapmig abort` removes it.  They
 *     are in use by that move (its mirror writes the top, its copy worker
 *     the layers below) whether or not a VM was given. */
static void
load_records (Ctx *c, const char *dir, const char *key,
              const char *address, const char *recover, bool moves)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  if (!d)
    return;
  while ((name = g_dir_read_name (d))) {
    g_autofree char *base = NULL;     /* OPID, or the move's snapshot */
    g_autofree char *record = NULL;
    g_autofree char *journal = NULL;
    g_autofree char *what = NULL;
    g_autoptr(GPtrArray) imgs = NULL;
    guint i;

    if (!g_str_has_suffix (name, ".created"))
      continue;
    base = g_strndup (name, strlen (name) - strlen (".created"));
    record = g_build_filename (dir, name, NULL);
    if (!moves) {
      journal = g_strdup_printf ("%s/%s.journal", dir, base);
      if (!g_file_test (journal, G_FILE_TEST_IS_REGULAR)) {
        sm_debug (DOMAIN, "%s: no journal %s; ignored", record, journal);
        continue;
      }
      what = journal_operation (journal, base);
      if (!what)
        continue;
    }
    imgs = record_images (c, record);
    for (i = 0; imgs && i < imgs->len; i++) {
      Img *img = imgs->pdata[i];

      img->is_image = true;
      if (moves && !img->move) {
        img->live = true;
        img->move = g_strdup (base);
        img->move_vm = g_strdup (address);
        g_ptr_array_add (img->used_by, g_strdup_printf ("move %s/%s", key,
                                                        base));
      } else if (!moves && !img->op_journal) {
        img->op_journal = g_strdup (journal);
        img->op_what = g_strdup (what);
        img->op_vm = g_strdup (address);
        img->op_recover = g_strdup (recover);
        g_ptr_array_add (img->used_by, g_strdup_printf ("operation %s",
                                                        journal));
      }
    }
  }
}

/* Every VM's state under STATE/vms: snapshot metadata, records of
 * interrupted operations and of moves in progress (lib/state.h,
 * lib/lsm.h).  The VM's address comes from its `vm` file. */
static void
load_state (Ctx *c)
{
  g_autofree char *vms_dir = NULL;
  g_autoptr(GDir) vms = NULL;
  const char *key;

  if (!c->opts->state_dir)
    return;
  /* the destination's side of interrupted cross-host migrations
   * (lib/migrate.h): files prepare created, QEMU perhaps still there */
  {
    g_autofree char *incoming = sm_migrate_incoming_dir (c->opts->state_dir);
    g_autofree char *recover = g_strdup_printf (
      "run 'snapmig recover --incoming --state-dir %s'", c->opts->state_dir);

    load_records (c, incoming, "incoming", "the incoming migration", recover,
                  false);
  }
  vms_dir = g_build_filename (c->opts->state_dir, "vms", NULL);
  vms = g_dir_open (vms_dir, 0, NULL);
  if (!vms)
    return;
  while ((key = g_dir_read_name (vms))) {
    g_autofree char *vm_dir = g_build_filename (vms_dir, key, NULL);
    g_autofree char *vm_file = g_build_filename (vm_dir, "vm", NULL);
    g_autofree char *address = NULL;

    if (g_file_get_contents (vm_file, &address, NULL, NULL))
      g_strstrip (address);
    if (!address || !*address) {
      g_free (address);
      address = g_strdup_printf ("ADDRESS (the VM whose state is %s)",
                                 vm_dir);
    }
    g_autofree char *journals = g_build_filename (vm_dir, "journal", NULL);
    g_autofree char *moves = g_build_filename (vm_dir, "lsm", NULL);
    g_autofree char *recover = g_strdup_printf ("run 'snapmig recover --qmp "
                                                "%s'", address);

    load_snapshots (c, vm_dir, key);
    load_records (c, journals, key, address, recover, false);
    load_records (c, moves, key, address, recover, true);
  }
}

/* Marks what each VM has open. */
static void
mark_vms (Ctx *c)
{
  size_t v;
  guint d, l;

  for (v = 0; v < c->opts->n_vms; v++) {
    const SmValidateVm *vm = c->opts->vms[v];
    g_autoptr(GHashTable) seen = g_hash_table_new (NULL, NULL);

    for (d = 0; d < vm->disks->len; d++) {
      const SmValidateVmDisk *disk = vm->disks->pdata[d];

      for (l = 0; l < disk->layers->len; l++) {
        g_autofree char *resolved = NULL;
        Img *img = NULL;
        bool writable = l == 0 && !disk->read_only;

        if (resolve_name (c, NULL, disk->layers->pdata[l], &img, &resolved)
            != RES_OK)
          continue;
        img->is_image = true;
        img->live = true;
        img->used_by_vm = true;
        if (!img->open_by)
          img->open_by = vm->address;
        g_ptr_array_add (img->used_by, g_strdup_printf ("vm %s %s",
                                                        vm->address,
                                                        disk->disk));
        add_finding (c, SM_SEVERITY_INFO, "in-use", img->path, vm->address,
                     disk->disk, writable ? "do not copy, move or remove it "
                     "while the VM runs" : NULL,
                     "%s: in use by VM %s (%s)%s", img->path, vm->address,
                     disk->disk, writable ? ", open for writing"
                     : ", read-only backing layer");
        g_hash_table_add (seen, img);
      }
    }
    for (d = 0; vm->nodes && d < vm->nodes->len; d++) {
      const SmValidateVmNode *node = vm->nodes->pdata[d];
      g_autofree char *resolved = NULL;
      Img *img = NULL;

      if (resolve_name (c, NULL, node->file, &img, &resolved) != RES_OK
          || g_hash_table_contains (seen, img))
        continue;
      g_hash_table_add (seen, img);
      img->is_image = true;
      img->live = true;
      img->used_by_vm = true;
      if (!img->open_by)
        img->open_by = vm->address;
      g_ptr_array_add (img->used_by, g_strdup_printf
                       ("vm %s %s", vm->address,
                        node->node_name ? node->node_name : "?"));
      add_finding (c, SM_SEVERITY_INFO, "in-use", img->path, vm->address,
                   NULL, node->read_only ? NULL : "do not copy, move or "
                   "remove it while the VM runs",
                   "%s: in use by VM %s (node %s, in no disk's chain: a "
                   "block job's target)%s", img->path, vm->address,
                   node->node_name ? node->node_name : "?",
                   node->read_only ? "" : ", open for writing");
    }
  }
}

/* A file an interrupted operation created: `snapmig recover` undoes the
 * operation and removes it.  Removable by hand only when no VM given has
 * it open and no move in progress lists it (the interrupted create of
 * that very move: its record and the move's both name the file until
 * recover runs). */
static void
report_interrupted (Ctx *c, Img *img)
{
  const char *recover = img->op_recover;
  g_autofree char *fix = NULL;

  if (img->open_by) {
    fix = g_strdup_printf ("%s: it rolls the operation back and removes the "
                           "file once the VM no longer uses it", recover);
    add_finding (c, SM_SEVERITY_WARNING, "leftover-interrupted-in-use",
                 img->path, img->open_by, NULL, fix, "%s: created by "
                 "interrupted snapmig %s (journal %s) and open in VM %s: not "
                 "removable", img->path, img->op_what, img->op_journal,
                 img->open_by);
  } else if (img->move) {
    add_finding (c, SM_SEVERITY_WARNING, "leftover-interrupted", img->path,
                 img->op_vm, NULL, recover, "%s: created by interrupted "
                 "snapmig %s (journal %s), also listed by move %s of VM %s: "
                 "not removable by hand", img->path, img->op_what,
                 img->op_journal, img->move, img->move_vm);
  } else {
    fix = c->opts->n_vms > 0
      ? g_strdup_printf ("%s or remove %s", recover, img->path)
      : g_strdup_printf ("%s or, once --qmp shows that no VM has it open, "
                         "remove %s", recover, img->path);
    add_finding (c, SM_SEVERITY_WARNING, "leftover-interrupted", img->path,
                 img->op_vm, NULL, fix, "%s: created by interrupted snapmig "
                 "%s (journal %s)%s", img->path, img->op_what,
                 img->op_journal, c->opts->n_vms > 0
                 ? " and not open in any VM given: removable" : "");
  }
}

/* Leftovers: what no VM, chain, snapshot or move needs.  Liveness flows
 * from the images a VM, snapshot or move uses down their backing chains.
 * Without a VM given, every top that no interrupted operation created
 * counts as used: validate cannot know who opens it. */
static void
find_leftovers (Ctx *c)
{
  bool vms_given = c->opts->n_vms > 0;
  guint i;

  for (i = 0; i < c->imgs->len; i++) {
    Img *img = c->imgs->pdata[i];

    if (!vms_given && img->is_image && img->referrers == 0
        && !img->op_journal)
      img->live = true;
  }
  for (i = 0; i < c->imgs->len; i++) {
    Img *img = c->imgs->pdata[i];
    Img *b;

    if (!img->live)
      continue;
    /* Every step marks one more image, so loops end too. */
    for (b = img->backing; b && !b->live; b = b->backing)
      b->live = true;
  }
  for (i = 0; i < c->imgs->len; i++) {
    Img *img = c->imgs->pdata[i];

    if (img->live && img->data_img)
      img->data_img->live = true;
  }
  for (i = 0; i < c->imgs->len; i++) {
    Img *img = c->imgs->pdata[i];
    g_autofree char *fix = NULL;

    if (!img->is_image)
      continue;
    if (img->op_journal) {
      report_interrupted (c, img);
    } else if (img->move) {
      fix = g_strdup_printf ("keep the file; run 'snapmig pivot --qmp "
                             "%s %s' or 'snapmig abort --qmp %s %s'",
                             img->move_vm, img->move, img->move_vm,
                             img->move);
      add_finding (c, SM_SEVERITY_INFO, "move-in-progress", img->path,
                   img->move_vm, NULL, fix, "%s: part of move %s of VM %s in "
                   "progress: finish it with 'snapmig pivot' or 'snapmig "
                   "abort'", img->path, img->move, img->move_vm);
    } else if (vms_given && !img->live && img->is_block) {
      /* A link to a logical volume (oVirt block domains): removing the
       * link frees nothing, and the volume is the volume manager's. */
      fix = g_strdup_printf ("if no VM that was not given with --qmp uses "
                             "it: rm '%s' (the link only) and free %s with "
                             "the volume manager (lvremove)", img->path,
                             img->device);
      add_finding (c, SM_SEVERITY_INFO, "leftover-unused", img->path, NULL,
                   NULL, fix, "%s: block device %s, not used by any given "
                   "VM, image, snapmig snapshot or move%s: removable",
                   img->path, img->device,
                   img->referrers ? " (only by other unused images)" : "");
    } else if (vms_given && !img->live) {
      fix = g_strdup_printf ("rm '%s' if no VM that was not given with "
                             "--qmp uses it", img->path);
      add_finding (c, SM_SEVERITY_INFO, "leftover-unused", img->path, NULL,
                   NULL, fix, "%s: not used by any given VM, image, snapmig "
                   "snapshot or move%s: removable", img->path,
                   img->referrers ? " (only by other unused images)" : "");
    }
  }
}

/* ---- report ------------------------------------------------------------- */

static void
validate_image_free (SmValidateImage *im)
{
  g_free (im->path);
  g_free (im->domain);
  g_free (im->backing_name);
  g_free (im->backing_format);
  g_free (im->backing_path);
  g_free (im->raw_by);
  g_ptr_array_unref (im->used_by);
  g_free (im);
}

static void
validate_chain_free (SmValidateChain *ch)
{
  g_free (ch->top);
  g_ptr_array_unref (ch->layers);
  g_free (ch);
}

static void
validate_disk_free (SmValidateDisk *d)
{
  g_free (d->vm);
  g_free (d->disk);
  g_ptr_array_unref (d->layers);
  g_free (d->domain);
  g_free (d->problem);
  g_free (d);
}

void
sm_validate_report_free (SmValidateReport *report)
{
  if (!report)
    return;
  g_ptr_array_unref (report->domains);
  g_ptr_array_unref (report->images);
  g_ptr_array_unref (report->chains);
  g_ptr_array_unref (report->disks);
  g_ptr_array_unref (report->findings);
  g_free (report);
}

static void
build_chains (Ctx *c, SmValidateReport *r)
{
  guint i;

  for (i = 0; i < c->imgs->len; i++) {
    Img *top = c->imgs->pdata[i];
    SmValidateChain *ch;
    Img *x;
    unsigned n = 0;

    if (!top->is_image || top->referrers > 0 || top->in_cycle)
      continue;
    ch = g_new0 (SmValidateChain, 1);
    ch->top = g_strdup (top->path);
    ch->layers = g_ptr_array_new_with_free_func (g_free);
    ch->complete = true;
    for (x = top; x; x = x->backing) {
      if (n++ == MAX_CHAIN) {
        ch->complete = false;
        add_finding (c, SM_SEVERITY_ERROR, "chain-too-deep", top->path, NULL,
                     NULL, "commit or stream layers to shorten the chain",
                     "%s: backing chain has more than %d layers", top->path,
                     MAX_CHAIN);
        break;
      }
      g_ptr_array_add (ch->layers, g_strdup (x->path));
      if (!x->header_ok || x->link_broken || x->in_cycle)
        ch->complete = false;
      if (x->in_cycle)
        break;
    }
    g_ptr_array_add (r->chains, ch);
  }
}

/* Which domain holds each VM disk's whole chain, as QEMU has it open. */
static void
place_disks (Ctx *c, SmValidateReport *r)
{
  size_t v;
  guint d, l;

  for (v = 0; v < c->opts->n_vms; v++) {
    const SmValidateVm *vm = c->opts->vms[v];

    for (d = 0; d < vm->disks->len; d++) {
      const SmValidateVmDisk *disk = vm->disks->pdata[d];
      SmValidateDisk *out = g_new0 (SmValidateDisk, 1);
      g_autoptr(GString) problem = g_string_new (NULL);
      g_autoptr(GPtrArray) imgs = g_ptr_array_new ();
      int domain = -1;
      int other = -1;              /* a second domain the chain spans */

      out->vm = g_strdup (vm->address);
      out->disk = g_strdup (disk->disk);
      out->layers = g_ptr_array_new_with_free_func (g_free);
      for (l = 0; l < disk->layers->len; l++) {
        const char *file = disk->layers->pdata[l];
        g_autofree char *resolved = NULL;
        Img *img = NULL;

        g_ptr_array_add (out->layers, g_strdup (file));
        if (resolve_name (c, NULL, file, &img, &resolved) != RES_OK) {
          if (!problem->len)
            g_string_printf (problem, "layer %s is not in any domain given",
                             file);
          continue;
        }
        g_ptr_array_add (imgs, img);
        if (domain < 0)
          domain = (int) img->domain;
        else if (domain != (int) img->domain && other < 0)
          other = (int) img->domain;
      }
      for (l = 0; !problem->len && l < imgs->len; l++) {
        Img *img = imgs->pdata[l];
        Img *want = l + 1 < imgs->len ? imgs->pdata[l + 1] : NULL;

        if (!img->header_ok || img->link_broken)
          g_string_printf (problem, "layer %s is damaged (see its errors)",
                           img->path);
        else if (img->backing != want)
          g_string_printf (problem, "the header of %s names backing file %s "
                           "but QEMU has %s open", img->path,
                           img->backing ? img->backing->path : "(none)",
                           want ? want->path : "(none)");
        else if (img->size_problem)
          g_string_printf (problem, "the sizes of %s and its backing file do "
                           "not fit", img->path);
      }
      if (!problem->len && imgs->len && disk->virtual_size
          && ((Img *) imgs->pdata[0])->virtual_size != disk->virtual_size)
        g_string_printf (problem, "%s is %" G_GUINT64_FORMAT " bytes but "
                         "QEMU's disk is %" G_GUINT64_FORMAT,
                         ((Img *) imgs->pdata[0])->path,
                         ((Img *) imgs->pdata[0])->virtual_size,
                         disk->virtual_size);
      if (!problem->len && !imgs->len)
        g_string_assign (problem, "QEMU reports no file for it");
      if (problem->len) {
        out->problem = g_strdup (problem->str);
        add_finding (c, SM_SEVERITY_ERROR, "vm-disk-no-domain",
                     disk->layers->len ? disk->layers->pdata[0] : NULL,
                     vm->address, disk->disk, "do not remove any image of "
                     "this disk; finish or redo its migration so one domain "
                     "holds the whole chain",
                     "VM %s disk %s: no domain given holds its complete "
                     "chain: %s", vm->address, disk->disk, problem->str);
      } else if (other >= 0) {
        /* a whole, consistent chain over several domains given: a top on
         * local storage over base images on shared storage (migrate
         * --copy-storage-inc, a template) — complete, but no domain alone
         * holds it */
        out->domain = g_strdup (c->given->pdata[domain]);
        add_finding (c, SM_SEVERITY_WARNING, "vm-disk-domains",
                     ((Img *) imgs->pdata[0])->path, vm->address, disk->disk,
                     "keep every domain it spans; to have one domain hold it, "
                     "move the disk with snapmig create --mirror-domain",
                     "VM %s disk %s: complete chain of %u layers across "
                     "domains %s (top) and %s: no domain alone holds it",
                     vm->address, disk->disk, imgs->len, out->domain,
                     (char *) c->given->pdata[other]);
      } else {
        out->domain = g_strdup (c->given->pdata[domain]);
        add_finding (c, SM_SEVERITY_INFO, "vm-disk-domain",
                     ((Img *) imgs->pdata[0])->path, vm->address, disk->disk,
                     NULL, "VM %s disk %s: complete chain of %u layer%s in "
                     "domain %s", vm->address, disk->disk, imgs->len,
                     imgs->len == 1 ? "" : "s", out->domain);
      }
      g_ptr_array_add (r->disks, out);
    }
  }
}

static gint
finding_cmp (gconstpointer a, gconstpointer b)
{
  const SmFinding *x = *(SmFinding *const *) a, *y = *(SmFinding *const *) b;
  int n;

  if (x->severity != y->severity)
    return x->severity > y->severity ? -1 : 1;
  n = g_strcmp0 (x->file, y->file);
  if (n)
    return n;
  n = strcmp (x->code, y->code);
  if (n)
    return n;
  return strcmp (x->message, y->message);
}

static void
build_images (Ctx *c, SmValidateReport *r)
{
  guint i;

  for (i = 0; i < c->imgs->len; i++) {
    Img *img = c->imgs->pdata[i];
    SmValidateImage *im;
    guint j;

    if (!img->is_image)
      continue;
    im = g_new0 (SmValidateImage, 1);
    im->path = g_strdup (img->path);
    im->domain = g_strdup (c->given->pdata[img->domain]);
    im->format = img->has_magic ? SM_IMAGE_FORMAT_QCOW2 : SM_IMAGE_FORMAT_RAW;
    im->raw_by = g_strdup (img->raw_by);
    im->is_block_device = img->is_block;
    im->virtual_size = img->virtual_size;
    im->file_size = img->file_size;
    if (img->info) {
      im->backing_name = g_strdup (img->info->backing_file);
      im->backing_format = g_strdup (img->info->backing_format);
    }
    im->backing_path = img->backing ? g_strdup (img->backing->path) : NULL;
    im->header_ok = img->header_ok;
    im->used_by = g_ptr_array_new_with_free_func (g_free);
    for (j = 0; j < img->used_by->len; j++)
      g_ptr_array_add (im->used_by, g_strdup (img->used_by->pdata[j]));
    g_ptr_array_add (r->images, im);
  }
}

static bool
open_domains (Ctx *c, GError **error)
{
  const char *const *d;

  for (d = c->opts->domains; d && *d; d++) {
    g_autofree char *given = g_strdup (*d);
    g_autofree char *abs = NULL;
    char *r;
    struct stat st;
    size_t n = strlen (given);

    /* "dom/" and "dom" are the same domain; keep "/" itself. */
    while (n > 1 && given[n - 1] == '/')
      given[--n] = '\0';
    if (stat (given, &st) < 0) {
      int saved = errno;

      g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                   "storage domain %s: %s%s%s%s", given, g_strerror (saved),
                   saved == ENOENT ? " (create it with 'mkdir -p " : "",
                   saved == ENOENT ? given : "",
                   saved == ENOENT ? "', or give the directory that holds "
                                     "the images)" : "");
      return false;
    }
    if (!S_ISDIR (st.st_mode)) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "storage domain %s is not a directory", given);
      return false;
    }
    r = realpath (given, NULL);
    if (!r) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "storage domain %s: %s",
                   given, g_strerror (errno));
      return false;
    }
    abs = g_canonicalize_filename (given, NULL);
    /* The same directory given twice is one domain, walked once. */
    if (g_ptr_array_find_with_equal_func (c->real, r, g_str_equal, NULL)) {
      free (r);
      continue;
    }
    g_ptr_array_add (c->real, g_strdup (r));
    free (r);
    g_ptr_array_add (c->lexical, g_steal_pointer (&abs));
    g_ptr_array_add (c->given, g_steal_pointer (&given));
  }
  if (!c->given->len) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "no storage domain given");
    return false;
  }
  return true;
}

SmValidateReport *
sm_validate_run (const SmValidateOptions *opts, GError **error)
{
  g_autoptr(SmValidateReport) r = NULL;
  __attribute__ ((cleanup (ctx_clear))) Ctx c = { 0 };
  guint i;

  g_return_val_if_fail (opts, NULL);
  c.opts = opts;
  c.given = g_ptr_array_new_with_free_func (g_free);
  c.lexical = g_ptr_array_new_with_free_func (g_free);
  c.real = g_ptr_array_new_with_free_func (g_free);
  c.paths = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  c.link_paths = g_hash_table_new (g_str_hash, g_str_equal);
  c.inodes = g_hash_table_new_full (dev_ino_hash, dev_ino_equal, g_free,
                                    NULL);
  c.dirs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  c.imgs = g_ptr_array_new_with_free_func ((GDestroyNotify) img_free);
  c.links = g_ptr_array_new_with_free_func ((GDestroyNotify) link_free);
  c.findings = g_ptr_array_new_with_free_func ((GDestroyNotify) finding_free);

  if (!open_domains (&c, error))
    return NULL;

  for (i = 0; i < c.given->len; i++) {
    const char *real = c.real->pdata[i];
    int fd = open (real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "storage domain %s: %s",
                   (char *) c.given->pdata[i], g_strerror (errno));
      return NULL;
    }
    g_hash_table_insert (c.dirs, g_strdup (real), g_strdup (real));
    walk_dir (&c, fd, real, c.given->pdata[i], i, 0);
  }
  resolve_links (&c);
  apply_stated_formats (&c);

  g_ptr_array_sort (c.imgs, img_cmp);
  for (i = 0; i < c.imgs->len; i++) {
    Img *img = c.imgs->pdata[i];

    if (img->info && img->info->backing_file)
      check_backing (&c, img);
  }
  find_cycles (&c);
  load_state (&c);
  mark_vms (&c);
  for (i = 0; i < c.imgs->len; i++) {
    Img *img = c.imgs->pdata[i];

    if (img->info)
      check_header (&c, img);
  }
  find_leftovers (&c);

  r = g_new0 (SmValidateReport, 1);
  r->domains = g_ptr_array_new_with_free_func (g_free);
  r->images = g_ptr_array_new_with_free_func
    ((GDestroyNotify) validate_image_free);
  r->chains = g_ptr_array_new_with_free_func
    ((GDestroyNotify) validate_chain_free);
  r->disks = g_ptr_array_new_with_free_func
    ((GDestroyNotify) validate_disk_free);
  r->vms_given = opts->n_vms > 0;
  for (i = 0; i < c.given->len; i++)
    g_ptr_array_add (r->domains, g_strdup (c.given->pdata[i]));
  build_chains (&c, r);
  place_disks (&c, r);
  build_images (&c, r);

  g_ptr_array_sort (c.findings, finding_cmp);
  r->findings = g_steal_pointer (&c.findings);
  for (i = 0; i < r->findings->len; i++) {
    const SmFinding *f = r->findings->pdata[i];

    switch (f->severity) {
    case SM_SEVERITY_ERROR: r->n_errors++; break;
    case SM_SEVERITY_WARNING: r->n_warnings++; break;
    case SM_SEVERITY_INFO: r->n_infos++; break;
    case SM_SEVERITY_LAST:
    default: break;
    }
  }
  return g_steal_pointer (&r);
}

bool
sm_validate_report_clean (const SmValidateReport *report, bool strict)
{
  return report->n_errors == 0 && (!strict || report->n_warnings == 0);
}

/* ---- VMs ------------------------------------------------------------- */

static void
vm_disk_free (SmValidateVmDisk *disk)
{
  g_free (disk->disk);
  g_ptr_array_unref (disk->layers);
  g_ptr_array_unref (disk->formats);
  g_free (disk);
}

static void
vm_node_free (SmValidateVmNode *node)
{
  g_free (node->file);
  g_free (node->node_name);
  g_free (node);
}

void
sm_validate_vm_free (SmValidateVm *vm)
{
  if (!vm)
    return;
  g_free (vm->address);
  g_ptr_array_unref (vm->disks);
  g_ptr_array_unref (vm->nodes);
  g_free (vm);
}

/* From the library's one VM view (lib/blockjob.h), not sm_disks_query: that
 * one also reads the chain's headers from disk, and validate must not open
 * files outside the domains it was given. */
SmValidateVm *
sm_validate_vm_from_block (const SmBlockVm *bvm, const char *address)
{
  g_autoptr(SmValidateVm) vm = g_new0 (SmValidateVm, 1);
  guint i, l;

  vm->address = g_strdup (address);
  vm->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) vm_disk_free);
  vm->nodes = g_ptr_array_new_with_free_func ((GDestroyNotify) vm_node_free);
  for (i = 0; i < bvm->disks->len; i++) {
    const SmBlockDisk *bd = bvm->disks->pdata[i];
    SmValidateVmDisk *disk;
    const char *name = bd->device ? bd->device
                       : bd->qdev ? bd->qdev : bd->node_name;

    if (!bd->node_name && bd->chain->len == 0)
      continue;                 /* no medium */
    disk = g_new0 (SmValidateVmDisk, 1);
    disk->disk = g_strdup (name ? name : "?");
    disk->layers = g_ptr_array_new_with_free_func (g_free);
    disk->formats = g_ptr_array_new_with_free_func (g_free);
    disk->read_only = bd->read_only;
    for (l = 0; l < bd->chain->len; l++) {
      const SmBlockLayer *layer = bd->chain->pdata[l];

      /* A layer QEMU names "json:{...}" whose own file the parser could
       * not single out stays as QEMU names it (not in any domain). */
      g_ptr_array_add (disk->layers, g_strdup (layer->filename));
      g_ptr_array_add (disk->formats, g_strdup (layer->format));
    }
    if (bd->chain->len > 0)
      disk->virtual_size =
        ((const SmBlockLayer *) bd->chain->pdata[0])->virtual_size;
    g_ptr_array_add (vm->disks, disk);
  }
  /* Every protocol node's file: a mirror's target is open for writing and
   * belongs to no disk until the pivot. */
  for (i = 0; i < bvm->nodes->len; i++) {
    const SmBlockNode *node = bvm->nodes->pdata[i];
    SmValidateVmNode *out;

    if (!node->file || (g_strcmp0 (node->drv, "file") != 0
                        && g_strcmp0 (node->drv, "host_device") != 0))
      continue;
    out = g_new0 (SmValidateVmNode, 1);
    out->file = g_strdup (node->file);
    out->node_name = g_strdup (node->node_name);
    out->read_only = node->read_only;
    g_ptr_array_add (vm->nodes, out);
  }
  return g_steal_pointer (&vm);
}

SmValidateVm *
sm_validate_vm_query (SmQmp *qmp, const char *address, GError **error)
{
  g_autoptr(SmBlockVm) bvm = sm_block_vm_query (qmp, error);

  if (!bvm) {
    g_prefix_error (error, "VM %s: ", address);
    return NULL;
  }
  return sm_validate_vm_from_block (bvm, address);
}

/* ---- JSON ------------------------------------------------------------ */

static json_object *
json_strv (const GPtrArray *a)
{
  json_object *arr = json_object_new_array ();
  guint i;

  for (i = 0; a && i < a->len; i++)
    json_object_array_add (arr, json_object_new_string (a->pdata[i]));
  return arr;
}

json_object *
sm_validate_report_to_json (const SmValidateReport *r, bool strict)
{
  json_object *root = json_object_new_object ();
  json_object *summary = json_object_new_object ();
  json_object *findings = json_object_new_array ();
  json_object *images = json_object_new_array ();
  json_object *chains = json_object_new_array ();
  json_object *disks = json_object_new_array ();
  guint i;

  json_object_object_add (summary, "images",
                          json_object_new_int64 (r->images->len));
  json_object_object_add (summary, "chains",
                          json_object_new_int64 (r->chains->len));
  json_object_object_add (summary, "errors",
                          json_object_new_int64 (r->n_errors));
  json_object_object_add (summary, "warnings",
                          json_object_new_int64 (r->n_warnings));
  json_object_object_add (summary, "infos",
                          json_object_new_int64 (r->n_infos));
  json_object_object_add (summary, "clean", json_object_new_boolean
                          (sm_validate_report_clean (r, strict)));
  json_object_object_add (summary, "strict", json_object_new_boolean (strict));
  json_object_object_add (summary, "leftovers-checked",
                          json_object_new_boolean (r->vms_given));

  for (i = 0; i < r->findings->len; i++) {
    const SmFinding *f = r->findings->pdata[i];
    json_object *o = json_object_new_object ();

    json_object_object_add (o, "severity", json_object_new_string
                            (sm_severity_to_string (f->severity)));
    json_object_object_add (o, "code", json_object_new_string (f->code));
    json_object_object_add (o, "file", sm_report_string_or_null (f->file));
    json_object_object_add (o, "message", json_object_new_string (f->message));
    json_object_object_add (o, "fix", sm_report_string_or_null (f->fix));
    json_object_object_add (o, "vm", sm_report_string_or_null (f->vm));
    json_object_object_add (o, "disk", sm_report_string_or_null (f->disk));
    json_object_array_add (findings, o);
  }
  for (i = 0; i < r->images->len; i++) {
    const SmValidateImage *im = r->images->pdata[i];
    json_object *o = json_object_new_object ();

    json_object_object_add (o, "path", json_object_new_string (im->path));
    json_object_object_add (o, "domain", json_object_new_string (im->domain));
    json_object_object_add (o, "format", json_object_new_string
                            (sm_image_format_to_string (im->format)));
    json_object_object_add (o, "block-device",
                            json_object_new_boolean (im->is_block_device));
    json_object_object_add (o, "virtual-size",
                            json_object_new_int64 ((int64_t) im->virtual_size));
    json_object_object_add (o, "file-size",
                            json_object_new_int64 ((int64_t) im->file_size));
    json_object_object_add (o, "backing-name",
                            sm_report_string_or_null (im->backing_name));
    json_object_object_add (o, "backing-format",
                            sm_report_string_or_null (im->backing_format));
    json_object_object_add (o, "backing-path",
                            sm_report_string_or_null (im->backing_path));
    json_object_object_add (o, "header-ok",
                            json_object_new_boolean (im->header_ok));
    json_object_object_add (o, "raw-by",
                            sm_report_string_or_null (im->raw_by));
    json_object_object_add (o, "used-by", json_strv (im->used_by));
    json_object_array_add (images, o);
  }
  for (i = 0; i < r->chains->len; i++) {
    const SmValidateChain *ch = r->chains->pdata[i];
    json_object *o = json_object_new_object ();

    json_object_object_add (o, "top", json_object_new_string (ch->top));
    json_object_object_add (o, "layers", json_strv (ch->layers));
    json_object_object_add (o, "complete",
                            json_object_new_boolean (ch->complete));
    json_object_array_add (chains, o);
  }
  for (i = 0; i < r->disks->len; i++) {
    const SmValidateDisk *d = r->disks->pdata[i];
    json_object *o = json_object_new_object ();

    json_object_object_add (o, "vm", json_object_new_string (d->vm));
    json_object_object_add (o, "disk", json_object_new_string (d->disk));
    json_object_object_add (o, "layers", json_strv (d->layers));
    json_object_object_add (o, "domain", sm_report_string_or_null (d->domain));
    json_object_object_add (o, "problem",
                            sm_report_string_or_null (d->problem));
    json_object_array_add (disks, o);
  }
  json_object_object_add (root, "domains", json_strv (r->domains));
  json_object_object_add (root, "summary", summary);
  json_object_object_add (root, "findings", findings);
  json_object_object_add (root, "images", images);
  json_object_object_add (root, "chains", chains);
  json_object_object_add (root, "vm-disks", disks);
  return root;
}
