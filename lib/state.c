/* libsnapmig — snapmig's state directory: per-VM lock, snapshot metadata,
 * atomic file writes.  Layout in state.h.
 */
#include "state.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define DOMAIN "state"

/* Longest snapshot name: NAME.xml and the temp file .NAME.xml.XXXXXX must fit
 * in NAME_MAX (255) with room to spare. */
#define SNAPSHOT_NAME_MAX 200
/* Readable part of a VM's directory name; the hash suffix makes it unique. */
#define KEY_READABLE_MAX 120
#define KEY_HASH_LEN 16

struct SmVmState {
  char *address;        /* as the user gave it: used in messages */
  char *canonical;      /* what KEY is derived from */
  char *dir;            /* STATE/vms/KEY */
  char *snapshot_dir;   /* STATE/vms/KEY/snapshots */
  char *journal_dir;    /* STATE/vms/KEY/journal */
  char *lock_path;
  char *current_path;
  int lock_fd;          /* -1 unless we hold the lock */
};

char *
sm_state_default_dir (void)
{
  const char *xdg, *home;

  if (geteuid () == 0)
    return g_strdup ("/var/lib/snapmig");
  /* Read the environment ourselves: g_get_user_state_dir caches its first
   * answer, and the XDG spec says to ignore a relative XDG_STATE_HOME. */
  xdg = g_getenv ("XDG_STATE_HOME");
  if (xdg && g_path_is_absolute (xdg))
    return g_build_filename (xdg, "snapmig", NULL);
  home = g_getenv ("HOME");
  if (!home || !*home)
    home = g_get_home_dir ();
  return g_build_filename (home, ".local", "state", "snapmig", NULL);
}

/* Same rule as sm_qmp_connect: a '/' makes it a socket path; otherwise a
 * ':' makes it host:port; anything else is a socket path in the current
 * directory. */
static bool
address_is_tcp (const char *address)
{
  return !strchr (address, '/') && strchr (address, ':');
}

/* The canonical form of a QMP address, so that "./vm.qmp", "/run/../run/vm.qmp"
 * and a symlink to the socket all give the same KEY.  The socket may be gone
 * (QEMU died, `list` after the fact): then the directory is resolved and the
 * name appended, and failing that the path is only made absolute and
 * cleaned. */
static char *
canonical_address (const char *address)
{
  g_autofree char *dir = NULL;
  g_autofree char *base = NULL;
  g_autofree char *real_dir = NULL;
  char *real;

  if (address_is_tcp (address))
    return g_strdup (address);
  real = realpath (address, NULL);
  if (real) {
    char *copy = g_strdup (real);

    free (real);
    return copy;
  }
  dir = g_path_get_dirname (address);
  base = g_path_get_basename (address);
  real = realpath (dir, NULL);
  if (real) {
    real_dir = g_strdup (real);
    free (real);
    return g_build_filename (real_dir, base, NULL);
  }
  return g_canonicalize_filename (address, NULL);
}

/* A readable, collision-free directory name for CANONICAL: the address
 * with '/' and other unsafe bytes turned into '_', its tail kept if long
 * (the socket's own name is the telling part), plus a hash of the full
 * canonical address. */
static char *
key_for_address (const char *canonical)
{
  g_autofree char *hash = g_compute_checksum_for_string (G_CHECKSUM_SHA256,
                                                         canonical, -1);
  const char *readable = canonical;
  GString *key = g_string_new (NULL);
  size_t len, i;

  while (*readable == '/')
    readable++;
  len = strlen (readable);
  if (len > KEY_READABLE_MAX)
    readable += len - KEY_READABLE_MAX;
  for (i = 0; readable[i]; i++) {
    char c = readable[i];

    if (g_ascii_isalnum (c) || c == '-' || c == '.' || c == ':' || c == '_')
      g_string_append_c (key, c);
    else
      g_string_append_c (key, '_');
  }
  /* Never a hidden or "." / ".." name. */
  if (key->len > 0 && key->str[0] == '.')
    key->str[0] = '_';
  g_string_append_printf (key, "-%.*s", KEY_HASH_LEN, hash);
  return g_string_free (key, FALSE);
}

/* Checks that NAME can be a file name under snapshots/ without surprises:
 * no path separator, not hidden (temp files are hidden), no control bytes
 * (the `current` file holds one name per line), bounded length. */
static bool
check_snapshot_name (const char *name, GError **error)
{
  const char *p;

  if (!name || !*name) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "snapshot name must not be empty");
    return false;
  }
  if (strlen (name) > SNAPSHOT_NAME_MAX) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "snapshot name '%.40s...' is longer than %d bytes",
                 name, SNAPSHOT_NAME_MAX);
    return false;
  }
  if (name[0] == '.') {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "snapshot name '%s' must not start with '.'", name);
    return false;
  }
  for (p = name; *p; p++) {
    if (*p == '/') {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "snapshot name '%s' must not contain '/'", name);
      return false;
    }
    if ((unsigned char) *p < 0x20 || *p == 0x7f) {
      g_autofree char *escaped = g_strescape (name, NULL);

      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "snapshot name '%s' must not contain control characters",
                   escaped);
      return false;
    }
  }
  return true;
}

/* 0700: the metadata names the user's images and sockets. */
static bool
make_dir (const char *path, GError **error)
{
  if (g_mkdir_with_parents (path, 0700) < 0) {
    int saved = errno;

    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "cannot create state directory %s: %s", path,
                 g_strerror (saved));
    return false;
  }
  return true;
}

bool
sm_state_fsync_dir (const char *dir, GError **error)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd < 0 || fsync (fd) < 0) {
    int saved = errno;

    if (fd >= 0)
      close (fd);
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot sync directory %s: %s",
                 dir, g_strerror (saved));
    return false;
  }
  close (fd);
  return true;
}

static bool
write_all (int fd, const char *data, size_t len)
{
  while (len > 0) {
    ssize_t n = write (fd, data, len);

    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    data += n;
    len -= n;
  }
  return true;
}

bool
sm_state_write_atomic (const char *path, const char *data, gssize len,
                       GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  /* Hidden, so that a reader listing the directory never picks it up. */
  g_autofree char *tmp = g_strdup_printf ("%s/.%s.XXXXXX", dir, base);
  size_t size = len < 0 ? strlen (data) : (size_t) len;
  const char *what = NULL;
  int fd, saved;

  fd = g_mkstemp_full (tmp, O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    saved = errno;
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "cannot create a temporary file in %s: %s", dir,
                 g_strerror (saved));
    return false;
  }
  if (!write_all (fd, data, size))
    what = "write";
  else if (fsync (fd) < 0)
    what = "sync";
  saved = errno;
  if (close (fd) < 0 && !what) {
    what = "write";
    saved = errno;
  }
  if (!what && rename (tmp, path) < 0) {
    what = "replace";
    saved = errno;
  }
  if (what) {
    unlink (tmp);
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot %s %s: %s", what, path,
                 g_strerror (saved));
    return false;
  }
  return sm_state_fsync_dir (dir, error);
}

void
sm_state_remove_stale_temps (const char *path)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  /* The names sm_state_write_atomic makes: ".BASE." plus mkstemp's six. */
  g_autofree char *prefix = g_strdup_printf (".%s.", base);
  size_t want = strlen (prefix) + 6;
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  if (!d)
    return;
  while ((name = g_dir_read_name (d)) != NULL) {
    g_autofree char *stale = NULL;

    if (strlen (name) != want || !g_str_has_prefix (name, prefix))
      continue;
    stale = g_build_filename (dir, name, NULL);
    sm_debug ("state", "removing %s, left by a writer that was killed", stale);
    unlink (stale);
  }
}

SmVmState *
sm_vm_state_open (const char *state_dir, const char *qmp_address,
                  GError **error)
{
  g_autoptr(SmVmState) st = NULL;
  g_autofree char *key = NULL;
  g_autofree char *vm_file = NULL;
  g_autofree char *stored = NULL;

  if (!qmp_address || !*qmp_address) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "the VM's QMP address must not be empty");
    return NULL;
  }
  st = g_new0 (SmVmState, 1);
  st->lock_fd = -1;
  st->address = g_strdup (qmp_address);
  st->canonical = canonical_address (qmp_address);
  key = key_for_address (st->canonical);
  st->dir = g_build_filename (state_dir, "vms", key, NULL);
  st->snapshot_dir = g_build_filename (st->dir, "snapshots", NULL);
  st->journal_dir = g_build_filename (st->dir, "journal", NULL);
  st->lock_path = g_build_filename (st->dir, "lock", NULL);
  st->current_path = g_build_filename (st->dir, "current", NULL);
  sm_debug (DOMAIN, "VM %s: canonical address %s, state in %s", qmp_address,
            st->canonical, st->dir);

  if (!make_dir (st->snapshot_dir, error) || !make_dir (st->journal_dir, error))
    return NULL;
  /* Rewritten only when it differs, so that read-only commands do not
   * fsync for nothing. */
  vm_file = g_build_filename (st->dir, "vm", NULL);
  if (!g_file_get_contents (vm_file, &stored, NULL, NULL) ||
      strcmp (g_strchomp (stored), st->canonical) != 0) {
    g_autofree char *line = g_strdup_printf ("%s\n", st->canonical);

    if (!sm_state_write_atomic (vm_file, line, -1, error))
      return NULL;
  }
  return g_steal_pointer (&st);
}

void
sm_vm_state_free (SmVmState *st)
{
  if (!st)
    return;
  sm_vm_state_unlock (st);
  g_free (st->address);
  g_free (st->canonical);
  g_free (st->dir);
  g_free (st->snapshot_dir);
  g_free (st->journal_dir);
  g_free (st->lock_path);
  g_free (st->current_path);
  g_free (st);
}

const char *
sm_vm_state_dir (const SmVmState *st)
{
  return st->dir;
}

const char *
sm_vm_state_journal_dir (const SmVmState *st)
{
  return st->journal_dir;
}

const char *
sm_vm_state_address (const SmVmState *st)
{
  return st->address;
}

const char *
sm_vm_state_canonical_address (const SmVmState *st)
{
  return st->canonical;
}

/* The PID the lock holder wrote into the lock file, or 0 if unreadable
 * (it may have locked and not yet written it). */
static long
read_lock_holder (int fd)
{
  char buf[32];
  ssize_t n = pread (fd, buf, sizeof buf - 1, 0);
  char *end;
  long pid;

  if (n <= 0)
    return 0;
  buf[n] = '\0';
  pid = strtol (buf, &end, 10);
  if (end == buf || pid <= 0)
    return 0;
  return pid;
}

bool
sm_vm_state_lock (SmVmState *st, GError **error)
{
  g_autofree char *pid = NULL;
  int fd, saved;

  if (st->lock_fd >= 0)
    return true;
  fd = open (st->lock_path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    saved = errno;
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot open lock file %s: %s",
                 st->lock_path, g_strerror (saved));
    return false;
  }
  while (flock (fd, LOCK_EX | LOCK_NB) < 0) {
    long holder;

    saved = errno;
    if (saved == EINTR)
      continue;
    if (saved != EWOULDBLOCK) {
      close (fd);
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot lock %s: %s",
                   st->lock_path, g_strerror (saved));
      return false;
    }
    holder = read_lock_holder (fd);
    close (fd);
    if (holder > 0)
      sm_error_set_with_object (error, SM_ERROR_BUSY, st->address,
                   "VM %s is locked by another snapmig (pid %ld)",
                   st->address, holder);
    else
      sm_error_set_with_object (error, SM_ERROR_BUSY, st->address,
                   "VM %s is locked by another snapmig", st->address);
    return false;
  }
  /* The PID is only for the message above: the flock is the lock, so a
   * stale PID left by a killed snapmig does no harm. */
  pid = g_strdup_printf ("%ld\n", (long) getpid ());
  if (ftruncate (fd, 0) < 0 || pwrite (fd, pid, strlen (pid), 0) < 0)
    sm_debug (DOMAIN, "cannot write PID into %s: %s", st->lock_path,
              g_strerror (errno));
  st->lock_fd = fd;
  sm_debug (DOMAIN, "locked VM %s", st->address);
  return true;
}

long
sm_vm_state_lock_holder (SmVmState *st)
{
  int fd = open (st->lock_path, O_RDONLY | O_CLOEXEC);
  long pid;

  if (fd < 0)
    return 0;
  pid = read_lock_holder (fd);
  close (fd);
  /* The PID stays in the file when its holder is killed (the flock goes
   * with it): a dead PID holds nothing.  EPERM: alive, another user's. */
  if (pid > 0 && kill ((pid_t) pid, 0) < 0 && errno != EPERM)
    return 0;
  return pid;
}

void
sm_vm_state_unlock (SmVmState *st)
{
  if (st->lock_fd < 0)
    return;
  /* Clear the PID while still holding the lock, so nobody reads ours. */
  if (ftruncate (st->lock_fd, 0) < 0)
    sm_debug (DOMAIN, "cannot clear %s: %s", st->lock_path, g_strerror (errno));
  flock (st->lock_fd, LOCK_UN);
  close (st->lock_fd);
  st->lock_fd = -1;
  sm_debug (DOMAIN, "unlocked VM %s", st->address);
}

static char *
snapshot_path (SmVmState *st, const char *name)
{
  g_autofree char *file = g_strdup_printf ("%s.xml", name);

  return g_build_filename (st->snapshot_dir, file, NULL);
}

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* A wrong name says which names there are: the snapshot files' names,
 * sorted (not parsed: the error must not depend on every file being
 * sound). */
static void
set_not_found (SmVmState *st, const char *name, GError **error)
{
  g_autoptr(GDir) dir = g_dir_open (st->snapshot_dir, 0, NULL);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GString) list = g_string_new (NULL);
  const char *file;
  guint i;

  while (dir && (file = g_dir_read_name (dir))) {
    g_autofree char *n = NULL;

    if (file[0] == '.' || !g_str_has_suffix (file, ".xml"))
      continue;
    n = g_strndup (file, strlen (file) - strlen (".xml"));
    if (check_snapshot_name (n, NULL))
      g_ptr_array_add (names, g_steal_pointer (&n));
  }
  g_ptr_array_sort (names, compare_names);
  for (i = 0; i < names->len; i++)
    g_string_append_printf (list, "%s%s", i ? ", " : "",
                            (const char *) names->pdata[i]);
  if (names->len)
    sm_error_set_with_object (error, SM_ERROR_NOT_FOUND, name,
                 "snapshot '%s' not found for VM %s (its snapshots: %s; "
                 "see 'snapmig list')", name, st->address, list->str);
  else
    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "snapshot '%s' not found for VM %s (it has no snapshots)",
                 name, st->address);
}

bool
sm_vm_state_save_snapshot (SmVmState *st, const SmSnapshotDef *def,
                           GError **error)
{
  g_autofree char *xml = NULL;
  g_autofree char *path = NULL;
  g_autofree char *source_name = NULL;

  if (!check_snapshot_name (def->name, error))
    return false;
  /* What cannot be loaded back must not be stored. */
  source_name = g_strdup_printf ("snapshot '%s'", def->name);
  if (!sm_snapshot_def_check (def, source_name, error))
    return false;
  xml = sm_snapshot_format (def);
  path = snapshot_path (st, def->name);
  sm_debug (DOMAIN, "saving snapshot '%s' of VM %s to %s", def->name,
            st->address, path);
  return sm_state_write_atomic (path, xml, -1, error);
}

char *
sm_vm_state_read_snapshot_xml (SmVmState *st, const char *name, GError **error)
{
  g_autofree char *path = NULL;
  g_autofree char *xml = NULL;
  g_autoptr(GError) err = NULL;

  if (!check_snapshot_name (name, error))
    return NULL;
  path = snapshot_path (st, name);
  if (!g_file_get_contents (path, &xml, NULL, &err)) {
    if (g_error_matches (err, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      set_not_found (st, name, error);
    else
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s", err->message);
    return NULL;
  }
  return g_steal_pointer (&xml);
}

SmSnapshotDef *
sm_vm_state_load_snapshot (SmVmState *st, const char *name, GError **error)
{
  g_autofree char *path = NULL;
  g_autoptr(SmSnapshotDef) def = NULL;

  if (!check_snapshot_name (name, error))
    return NULL;
  path = snapshot_path (st, name);
  if (access (path, F_OK) < 0 && errno == ENOENT) {
    set_not_found (st, name, error);
    return NULL;
  }
  def = sm_snapshot_parse_file (path, error);
  if (!def)
    return NULL;
  /* A file renamed or edited by hand must not pass for another snapshot. */
  if (!def->name || strcmp (def->name, name) != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "snapshot file %s holds snapshot '%s', not '%s'", path,
                 def->name ? def->name : "(no name)", name);
    return NULL;
  }
  return g_steal_pointer (&def);
}

typedef struct {
  char *name;
  int64_t creation_time;
} ListEntry;

static int
compare_entries (const void *a, const void *b)
{
  const ListEntry *x = a, *y = b;

  if (x->creation_time != y->creation_time)
    return x->creation_time < y->creation_time ? -1 : 1;
  return strcmp (x->name, y->name);
}

static void
clear_entry (void *p)
{
  g_free (((ListEntry *) p)->name);
}

char **
sm_vm_state_list_snapshots (SmVmState *st, GError **error)
{
  g_autoptr(GDir) dir = NULL;
  g_autoptr(GArray) entries = g_array_new (FALSE, FALSE, sizeof (ListEntry));
  GPtrArray *names;
  const char *file;
  guint i;

  g_array_set_clear_func (entries, clear_entry);
  dir = g_dir_open (st->snapshot_dir, 0, error);
  if (!dir)
    return NULL;
  while ((file = g_dir_read_name (dir))) {
    g_autofree char *name = NULL;
    g_autoptr(SmSnapshotDef) def = NULL;
    ListEntry entry;

    /* Skips temp files (hidden) and anything not made by us. */
    if (file[0] == '.' || !g_str_has_suffix (file, ".xml"))
      continue;
    name = g_strndup (file, strlen (file) - strlen (".xml"));
    if (!check_snapshot_name (name, NULL))
      continue;
    def = sm_vm_state_load_snapshot (st, name, error);
    if (!def)
      return NULL;
    entry.name = g_steal_pointer (&name);
    entry.creation_time = def->creation_time;
    g_array_append_val (entries, entry);
  }
  g_array_sort (entries, compare_entries);
  names = g_ptr_array_new ();
  for (i = 0; i < entries->len; i++) {
    ListEntry *e = &g_array_index (entries, ListEntry, i);

    g_ptr_array_add (names, g_steal_pointer (&e->name));
  }
  g_ptr_array_add (names, NULL);
  return (char **) g_ptr_array_free (names, FALSE);
}

bool
sm_vm_state_delete_snapshot (SmVmState *st, const char *name, GError **error)
{
  g_autofree char *path = NULL;
  g_autofree char *current = NULL;
  g_autoptr(GError) err = NULL;

  if (!check_snapshot_name (name, error))
    return false;
  path = snapshot_path (st, name);
  if (unlink (path) < 0) {
    int saved = errno;

    if (saved == ENOENT)
      set_not_found (st, name, error);
    else
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot delete %s: %s", path,
                   g_strerror (saved));
    return false;
  }
  sm_debug (DOMAIN, "deleted snapshot '%s' of VM %s", name, st->address);
  /* Writers of this file hold the VM's lock, as we do: one that is not
   * running any more and left a temporary file was killed mid-write. */
  sm_state_remove_stale_temps (path);
  if (!sm_state_fsync_dir (st->snapshot_dir, error))
    return false;
  current = sm_vm_state_get_current (st, &err);
  if (err) {
    g_propagate_error (error, g_steal_pointer (&err));
    return false;
  }
  if (current && strcmp (current, name) == 0)
    return sm_vm_state_set_current (st, NULL, error);
  return true;
}

bool
sm_vm_state_delete_snapshot_checked (SmVmState *st, const char *name,
                                     bool metadata_only, GError **error)
{
  g_autoptr(SmSnapshotDef) def = NULL;
  g_autoptr(GError) err = NULL;
  guint i;

  if (metadata_only)
    return sm_vm_state_delete_snapshot (st, name, error);
  def = sm_vm_state_load_snapshot (st, name, &err);
  if (!def) {
    if (g_error_matches (err, SM_ERROR, SM_ERROR_NOT_FOUND)) {
      g_propagate_error (error, g_steal_pointer (&err));
      return false;
    }
    /* An unreadable document cannot tell whether a move runs. */
    g_propagate_prefixed_error (error, g_steal_pointer (&err),
                                "cannot tell whether snapshot '%s' has a disk "
                                "move in progress ('snapmig delete "
                                "--metadata-only' deletes it anyway): ", name);
    return false;
  }
  /* pivot and abort remove their snapshot, so a stored <mirror> means the
   * move it describes has not been finished. */
  for (i = 0; def->disks && i < def->disks->len; i++) {
    const SmSnapshotDisk *disk = g_ptr_array_index (def->disks, i);

    if (disk->mirror_file) {
      g_set_error (error, SM_ERROR, SM_ERROR_BUSY,
                   "snapshot '%s' of VM %s has a disk move in progress "
                   "(disk %s to %s): finish it with 'snapmig pivot' or "
                   "'snapmig abort' ('snapmig delete --metadata-only' "
                   "forgets the snapshot and leaves the move running)",
                   name, st->address, disk->name,
                   disk->mirror_file);
      return false;
    }
  }
  return sm_vm_state_delete_snapshot (st, name, error);
}

char *
sm_vm_state_get_current (SmVmState *st, GError **error)
{
  g_autofree char *text = NULL;
  g_autoptr(GError) err = NULL;

  if (!g_file_get_contents (st->current_path, &text, NULL, &err)) {
    if (g_error_matches (err, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      return NULL;
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s", err->message);
    return NULL;
  }
  g_strchomp (text);
  if (!check_snapshot_name (text, &err)) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID, "%s: %s",
                 st->current_path, err->message);
    return NULL;
  }
  return g_steal_pointer (&text);
}

bool
sm_vm_state_set_current (SmVmState *st, const char *name, GError **error)
{
  g_autofree char *path = NULL;
  g_autofree char *line = NULL;

  if (!name) {
    if (unlink (st->current_path) < 0 && errno != ENOENT) {
      int saved = errno;

      g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot delete %s: %s",
                   st->current_path, g_strerror (saved));
      return false;
    }
    return sm_state_fsync_dir (st->dir, error);
  }
  if (!check_snapshot_name (name, error))
    return false;
  path = snapshot_path (st, name);
  if (access (path, F_OK) < 0) {
    set_not_found (st, name, error);
    return false;
  }
  line = g_strdup_printf ("%s\n", name);
  return sm_state_write_atomic (st->current_path, line, -1, error);
}
