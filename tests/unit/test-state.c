/* Unit tests for lib/state.c: VM keys, the per-VM lock between processes,
 * atomic writes, and the snapshot metadata store.  Real files, sockets and
 * processes in a private temporary directory.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "harness.h"
#include "state.h"

static char *tmp_top;

/* A fresh directory for one test case. */
static char *
case_dir (const char *name)
{
  char *dir = g_build_filename (tmp_top, name, NULL);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  return dir;
}

/* A bound unix socket at PATH, as QEMU leaves it (-qmp unix:PATH,server=on). */
static void
make_socket (const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd = socket (AF_UNIX, SOCK_STREAM, 0);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpuint (strlen (path), <, sizeof sa.sun_path);
  strcpy (sa.sun_path, path);
  g_assert_cmpint (bind (fd, (struct sockaddr *) &sa, sizeof sa), ==, 0);
  close (fd);
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Names in DIR, sorted, joined by spaces: shows stray temp files. */
static char *
dir_listing (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  g_assert_nonnull (dir);
  while ((name = g_dir_read_name (dir)))
    g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_names);
  g_ptr_array_add (names, NULL);
  return g_strjoinv (" ", (char **) names->pdata);
}

static SmVmState *
open_state (const char *state_dir, const char *address)
{
  g_autoptr(GError) err = NULL;
  SmVmState *st = sm_vm_state_open (state_dir, address, &err);

  g_assert_no_error (err);
  g_assert_nonnull (st);
  return st;
}

static void
test_default_dir (void)
{
  g_autofree char *saved_home = g_strdup (g_getenv ("HOME"));
  g_autofree char *saved_xdg = g_strdup (g_getenv ("XDG_STATE_HOME"));
  g_autofree char *a = NULL, *b = NULL, *c = NULL;

  g_setenv ("HOME", "/home/someone", TRUE);
  g_setenv ("XDG_STATE_HOME", "/xdg/state", TRUE);
  a = sm_state_default_dir ();
  g_setenv ("XDG_STATE_HOME", "relative/ignored", TRUE);
  b = sm_state_default_dir ();
  g_unsetenv ("XDG_STATE_HOME");
  c = sm_state_default_dir ();
  if (geteuid () == 0) {
    g_assert_cmpstr (a, ==, "/var/lib/snapmig");
    g_assert_cmpstr (c, ==, "/var/lib/snapmig");
  } else {
    g_assert_cmpstr (a, ==, "/xdg/state/snapmig");
    g_assert_cmpstr (b, ==, "/home/someone/.local/state/snapmig");
    g_assert_cmpstr (c, ==, "/home/someone/.local/state/snapmig");
  }
  if (saved_home)
    g_setenv ("HOME", saved_home, TRUE);
  if (saved_xdg)
    g_setenv ("XDG_STATE_HOME", saved_xdg, TRUE);
}

/* Two spellings of one socket meet in one state directory; other sockets
 * get their own. */
static void
test_key (void)
{
  g_autofree char *dir = case_dir ("key");
  g_autofree char *state = g_build_filename (dir, "state", NULL);
  g_autofree char *sock = g_build_filename (dir, "vm.qmp", NULL);
  g_autofree char *other = g_build_filename (dir, "other.qmp", NULL);
  g_autofree char *sub = g_build_filename (dir, "sub", NULL);
  g_autofree char *dotted = g_build_filename (dir, "sub", "..", ".", "vm.qmp",
                                              NULL);
  g_autofree char *doubled = g_strdup_printf ("%s//vm.qmp", dir);
  g_autofree char *link = g_build_filename (dir, "link.qmp", NULL);
  g_autofree char *gone = g_build_filename (dir, "gone.qmp", NULL);
  g_autofree char *gone2 = g_build_filename (dir, "sub", "..", "gone.qmp",
                                             NULL);
  g_autofree char *cwd = g_get_current_dir ();
  g_autofree char *vm_file = NULL;
  g_autofree char *vm_text = NULL;
  g_autofree char *base = NULL;
  g_autofree char *long_path = NULL;
  g_autoptr(SmVmState) a = NULL, b = NULL, c = NULL, d = NULL, e = NULL;
  g_autoptr(SmVmState) f = NULL, g = NULL, h = NULL, i = NULL, j = NULL;
  g_autoptr(SmVmState) k = NULL, l = NULL;
  GString *lp;

  make_socket (sock);
  make_socket (other);
  g_assert_cmpint (g_mkdir (sub, 0700), ==, 0);
  g_assert_cmpint (symlink ("vm.qmp", link), ==, 0);

  a = open_state (state, sock);
  b = open_state (state, dotted);
  c = open_state (state, doubled);
  d = open_state (state, link);
  g_assert_cmpint (g_chdir (dir), ==, 0);
  e = open_state (state, "vm.qmp");
  f = open_state (state, "./vm.qmp");
  g_assert_cmpint (g_chdir (cwd), ==, 0);
  g_assert_cmpstr (sm_vm_state_dir (a), ==, sm_vm_state_dir (b));
  g_assert_cmpstr (sm_vm_state_dir (a), ==, sm_vm_state_dir (c));
  g_assert_cmpstr (sm_vm_state_dir (a), ==, sm_vm_state_dir (d));
  g_assert_cmpstr (sm_vm_state_dir (a), ==, sm_vm_state_dir (e));
  g_assert_cmpstr (sm_vm_state_dir (a), ==, sm_vm_state_dir (f));
  /* Messages keep the user's spelling. */
  g_assert_cmpstr (sm_vm_state_address (d), ==, link);

  /* The `vm` file tells people which VM a directory belongs to. */
  vm_file = g_build_filename (sm_vm_state_dir (a), "vm", NULL);
  g_assert_true (g_file_get_contents (vm_file, &vm_text, NULL, NULL));
  g_assert_true (g_str_has_suffix (vm_text, "/vm.qmp\n"));
  g_assert_cmpstr (sm_vm_state_canonical_address (a), ==,
                   g_strchomp (vm_text));
  /* The directory name is readable. */
  base = g_path_get_basename (sm_vm_state_dir (a));
  g_assert_nonnull (strstr (base, "vm.qmp"));
  g_assert_true (g_file_test (sm_vm_state_journal_dir (a), G_FILE_TEST_IS_DIR));

  g = open_state (state, other);
  g_assert_cmpstr (sm_vm_state_dir (a), !=, sm_vm_state_dir (g));

  /* A socket that is gone (QEMU exited) still finds its state. */
  h = open_state (state, gone);
  i = open_state (state, gone2);
  g_assert_cmpstr (sm_vm_state_dir (h), ==, sm_vm_state_dir (i));
  g_assert_cmpstr (sm_vm_state_dir (h), !=, sm_vm_state_dir (a));

  /* TCP addresses are kept as host:port. */
  j = open_state (state, "127.0.0.1:4444");
  k = open_state (state, "127.0.0.1:4445");
  g_assert_cmpstr (sm_vm_state_canonical_address (j), ==, "127.0.0.1:4444");
  g_assert_cmpstr (sm_vm_state_dir (j), !=, sm_vm_state_dir (k));

  /* A socket path longer than a file name still gives a usable key. */
  lp = g_string_new (dir);
  while (lp->len < 400)
    g_string_append (lp, "/a-rather-long-directory-name");
  g_string_append (lp, "/vm.qmp");
  long_path = g_string_free (lp, FALSE);
  l = open_state (state, long_path);
  g_clear_pointer (&base, g_free);
  base = g_path_get_basename (sm_vm_state_dir (l));
  g_assert_cmpuint (strlen (base), <=, 150);
  g_assert_nonnull (strstr (base, "vm.qmp"));
}

static void
test_open_empty_address (void)
{
  g_autofree char *dir = case_dir ("empty-address");
  g_autoptr(GError) err = NULL;
  g_autoptr(SmVmState) st = sm_vm_state_open (dir, "", &err);

  g_assert_null (st);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
}

/* A child process holds the lock: the parent is refused with the child's
 * PID, and gets the lock once the child has died without unlocking. */
static void
test_lock_between_processes (void)
{
  g_autofree char *dir = case_dir ("lock");
  g_autofree char *sock = g_build_filename (dir, "vm.qmp", NULL);
  g_autofree char *expect = NULL;
  g_autofree char *lock_file = NULL;
  g_autofree char *lock_text = NULL;
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(GError) err = NULL;
  int ready[2], hold[2], status;
  pid_t child;
  char c;

  make_socket (sock);
  g_assert_cmpint (pipe (ready), ==, 0);
  g_assert_cmpint (pipe (hold), ==, 0);
  child = fork ();
  g_assert_cmpint (child, >=, 0);
  if (child == 0) {
    SmVmState *cst;

    close (ready[0]);
    close (hold[1]);
    cst = sm_vm_state_open (dir, sock, NULL);
    if (!cst || !sm_vm_state_lock (cst, NULL))
      _exit (1);
    if (write (ready[1], "x", 1) != 1)
      _exit (1);
    /* Holds the lock until the parent kills us. */
    while (read (hold[0], &c, 1) < 0 && errno == EINTR)
      ;
    _exit (0);
  }
  close (ready[1]);
  close (hold[0]);
  g_assert_cmpint (read (ready[0], &c, 1), ==, 1);

  st = open_state (dir, sock);
  /* A watcher sees the holder without taking the lock. */
  g_assert_cmpint (sm_vm_state_lock_holder (st), ==, child);
  g_assert_false (sm_vm_state_lock (st, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_BUSY);
  expect = g_strdup_printf ("VM %s is locked by another snapmig (pid %ld)",
                            sock, (long) child);
  g_assert_cmpstr (err->message, ==, expect);
  g_clear_error (&err);

  /* SIGKILL: no chance to unlock, the kernel drops the flock; its PID
   * stays in the file, but a dead process holds nothing. */
  g_assert_cmpint (kill (child, SIGKILL), ==, 0);
  g_assert_cmpint (waitpid (child, &status, 0), ==, child);
  close (ready[0]);
  close (hold[1]);
  g_assert_cmpint (sm_vm_state_lock_holder (st), ==, 0);
  g_assert_true (sm_vm_state_lock (st, &err));
  g_assert_no_error (err);
  lock_file = g_build_filename (sm_vm_state_dir (st), "lock", NULL);
  g_assert_true (g_file_get_contents (lock_file, &lock_text, NULL, NULL));
  g_assert_cmpint (atol (lock_text), ==, getpid ());
}

/* Within one process, two openings exclude each other too; unlock and free
 * release the lock. */
static void
test_lock_release (void)
{
  g_autofree char *dir = case_dir ("lock-release");
  g_autoptr(SmVmState) a = open_state (dir, "127.0.0.1:5000");
  g_autoptr(SmVmState) b = open_state (dir, "127.0.0.1:5000");
  g_autoptr(SmVmState) other = open_state (dir, "127.0.0.1:5001");
  g_autoptr(GError) err = NULL;

  g_assert_true (sm_vm_state_lock (a, &err));
  g_assert_true (sm_vm_state_lock (a, &err));   /* already ours */
  g_assert_true (sm_vm_state_lock (other, &err));
  g_assert_false (sm_vm_state_lock (b, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_BUSY);
  g_assert_nonnull (strstr (err->message, "VM 127.0.0.1:5000 is locked"));
  g_clear_error (&err);
  g_assert_cmpint (sm_vm_state_lock_holder (b), ==, getpid ());
  sm_vm_state_unlock (a);
  g_assert_cmpint (sm_vm_state_lock_holder (b), ==, 0);
  g_assert_true (sm_vm_state_lock (b, &err));
  g_assert_no_error (err);
  g_clear_pointer (&b, sm_vm_state_free);
  g_assert_true (sm_vm_state_lock (a, &err));
  g_assert_no_error (err);
}

static void
test_atomic_write (void)
{
  g_autofree char *dir = case_dir ("atomic");
  g_autofree char *file = g_build_filename (dir, "file", NULL);
  g_autofree char *subdir = g_build_filename (dir, "isdir", NULL);
  g_autofree char *inner = g_build_filename (subdir, "inner", NULL);
  g_autofree char *text = NULL;
  g_autofree char *listing = NULL;
  g_autoptr(GError) err = NULL;
  gsize len;

  g_assert_true (sm_state_write_atomic (file, "first\n", -1, &err));
  g_assert_no_error (err);
  g_assert_true (sm_state_write_atomic (file, "sec\0nd", 6, &err));
  g_assert_no_error (err);
  g_assert_true (g_file_get_contents (file, &text, &len, NULL));
  g_assert_cmpmem (text, len, "sec\0nd", 6);
  listing = dir_listing (dir);
  g_assert_cmpstr (listing, ==, "file");

  /* rename() cannot replace a directory: the write fails, the directory and
   * what it holds are untouched, no temp file is left. */
  g_assert_cmpint (g_mkdir (subdir, 0700), ==, 0);
  g_assert_true (g_file_set_contents (inner, "keep", -1, NULL));
  g_assert_false (sm_state_write_atomic (subdir, "data", -1, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_IO);
  g_assert_nonnull (strstr (err->message, subdir));
  g_clear_error (&err);
  g_clear_pointer (&listing, g_free);
  listing = dir_listing (dir);
  g_assert_cmpstr (listing, ==, "file isdir");
  g_clear_pointer (&text, g_free);
  g_assert_true (g_file_get_contents (inner, &text, NULL, NULL));
  g_assert_cmpstr (text, ==, "keep");

  /* No such directory. */
  g_assert_false (sm_state_write_atomic ("/nonexistent-snapmig-dir/f", "x", -1,
                                         &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_IO);
  g_assert_nonnull (strstr (err->message, "/nonexistent-snapmig-dir"));
}

/* A write that fails half-way (file size limit: the kernel refuses with
 * EFBIG) leaves the old file as it was and no temp file. */
/* A writer killed between mkstemp and rename leaves ".BASE.XXXXXX":
 * sm_state_remove_stale_temps removes exactly those, for that one file. */
static void
test_remove_stale_temps (void)
{
  g_autofree char *dir = case_dir ("stale");
  g_autofree char *file = g_build_filename (dir, "r9.copy.json", NULL);
  const char *const stale[] = { ".r9.copy.json.44DNZ3", ".r9.copy.json.aaaaaa" };
  const char *const kept[] = {
    "r9.copy.json", ".r9.copy.json.ABC", ".r9.copy.json.ABCDEFG",
    ".r9.json.44DNZ3", ".r10.copy.json.44DNZ3", "x.r9.copy.json.44DNZ3",
  };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (stale); i++) {
    g_autofree char *p = g_build_filename (dir, stale[i], NULL);
    g_assert_true (g_file_set_contents (p, "{", -1, NULL));
  }
  for (i = 0; i < G_N_ELEMENTS (kept); i++) {
    g_autofree char *p = g_build_filename (dir, kept[i], NULL);
    g_assert_true (g_file_set_contents (p, "{}", -1, NULL));
  }
  sm_state_remove_stale_temps (file);
  for (i = 0; i < G_N_ELEMENTS (stale); i++) {
    g_autofree char *p = g_build_filename (dir, stale[i], NULL);
    g_assert_false (g_file_test (p, G_FILE_TEST_EXISTS));
  }
  for (i = 0; i < G_N_ELEMENTS (kept); i++) {
    g_autofree char *p = g_build_filename (dir, kept[i], NULL);
    g_assert_true (g_file_test (p, G_FILE_TEST_EXISTS));
  }
  /* A directory that does not exist is no error. */
  sm_state_remove_stale_temps ("/nonexistent-snapmig-dir/file");
}

static void
test_atomic_write_short (void)
{
  g_autofree char *dir = case_dir ("atomic-short");
  g_autofree char *file = g_build_filename (dir, "file", NULL);
  g_autofree char *big = g_strnfill (64 * 1024, 'b');
  g_autofree char *text = NULL;
  g_autofree char *listing = NULL;
  g_autoptr(GError) err = NULL;
  struct rlimit saved, small;
  void (*old_handler) (int);
  bool ok;

  g_assert_true (sm_state_write_atomic (file, "old content\n", -1, &err));
  g_assert_cmpint (getrlimit (RLIMIT_FSIZE, &saved), ==, 0);
  small = saved;
  small.rlim_cur = 4096;
  old_handler = signal (SIGXFSZ, SIG_IGN);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &small), ==, 0);
  ok = sm_state_write_atomic (file, big, -1, &err);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &saved), ==, 0);
  signal (SIGXFSZ, old_handler);

  g_assert_false (ok);
  g_assert_error (err, SM_ERROR, SM_ERROR_IO);
  g_assert_nonnull (strstr (err->message, file));
  g_assert_true (g_file_get_contents (file, &text, NULL, NULL));
  g_assert_cmpstr (text, ==, "old content\n");
  listing = dir_listing (dir);
  g_assert_cmpstr (listing, ==, "file");
}

/* A valid disk-only snapshot of one or two disks. */
static SmSnapshotDef *
make_def (const char *name, int64_t when, const char *mirror)
{
  SmSnapshotDef *def = sm_snapshot_def_new ();
  SmSnapshotDisk *disk = sm_snapshot_disk_new ("vda");
  g_autofree char *src = g_strdup_printf ("/images/vda.%s.qcow2", name);

  def->name = g_strdup (name);
  def->description = g_strdup ("test snapshot");
  def->state = g_strdup ("disk-snapshot");
  def->creation_time = when;
  def->has_disks = true;
  disk->snapshot = SM_SNAPSHOT_LOCATION_EXTERNAL;
  disk->type = SM_DISK_TYPE_FILE;
  disk->source = g_strdup (src);
  disk->driver_type = g_strdup ("qcow2");
  if (mirror) {
    disk->mirror_file = g_strdup (mirror);
    disk->mirror_format = g_strdup ("qcow2");
  }
  g_ptr_array_add (def->disks, disk);
  disk = sm_snapshot_disk_new ("vdb");
  disk->snapshot = SM_SNAPSHOT_LOCATION_NO;
  g_ptr_array_add (def->disks, disk);
  return def;
}

static void
save (SmVmState *st, const char *name, int64_t when, const char *mirror)
{
  g_autoptr(SmSnapshotDef) def = make_def (name, when, mirror);
  g_autoptr(GError) err = NULL;

  g_assert_true (sm_vm_state_save_snapshot (st, def, &err));
  g_assert_no_error (err);
}

static void
test_snapshots (void)
{
  g_autofree char *dir = case_dir ("snapshots");
  g_autoptr(SmVmState) st = open_state (dir, "127.0.0.1:6000");
  g_autoptr(SmVmState) other = open_state (dir, "127.0.0.1:6001");
  g_autoptr(GError) err = NULL;
  g_autoptr(SmSnapshotDef) def = NULL;
  g_autoptr(SmSnapshotDef) want = NULL;
  g_auto(GStrv) names = NULL;
  g_autofree char *joined = NULL;
  g_autofree char *xml = NULL;
  g_autofree char *formatted = NULL;
  g_autofree char *current = NULL;
  g_autofree char *snapdir = g_build_filename (sm_vm_state_dir (st),
                                               "snapshots", NULL);
  g_autofree char *stray = g_build_filename (snapdir, ".s1.xml.AbCdEf", NULL);
  g_autofree char *listing = NULL;
  SmSnapshotDisk *disk;

  names = sm_vm_state_list_snapshots (st, &err);
  g_assert_no_error (err);
  g_assert_nonnull (names);
  g_assert_cmpuint (g_strv_length (names), ==, 0);
  g_clear_pointer (&names, g_strfreev);

  save (st, "s2", 200, NULL);
  save (st, "s1", 100, NULL);
  save (st, "s3", 100, "/dst/vda.s3.qcow2");
  save (st, "s0", -1, NULL);   /* no creationTime: sorts first */
  /* A leftover temp file of an interrupted write is not a snapshot. */
  g_assert_true (g_file_set_contents (stray, "garbage", -1, NULL));

  names = sm_vm_state_list_snapshots (st, &err);
  g_assert_no_error (err);
  joined = g_strjoinv (" ", names);
  g_assert_cmpstr (joined, ==, "s0 s1 s3 s2");
  g_clear_pointer (&names, g_strfreev);
  names = sm_vm_state_list_snapshots (other, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (g_strv_length (names), ==, 0);

  /* Load gives back what was saved. */
  def = sm_vm_state_load_snapshot (st, "s3", &err);
  g_assert_no_error (err);
  g_assert_nonnull (def);
  g_assert_cmpstr (def->name, ==, "s3");
  g_assert_cmpstr (def->description, ==, "test snapshot");
  g_assert_cmpstr (def->state, ==, "disk-snapshot");
  g_assert_cmpint (def->creation_time, ==, 100);
  g_assert_cmpuint (def->disks->len, ==, 2);
  disk = sm_snapshot_find_disk (def, "vda");
  g_assert_nonnull (disk);
  g_assert_cmpstr (disk->source, ==, "/images/vda.s3.qcow2");
  g_assert_cmpstr (disk->mirror_file, ==, "/dst/vda.s3.qcow2");
  g_assert_cmpstr (disk->mirror_format, ==, "qcow2");
  disk = sm_snapshot_find_disk (def, "vdb");
  g_assert_nonnull (disk);
  g_assert_cmpint (disk->snapshot, ==, SM_SNAPSHOT_LOCATION_NO);

  /* The stored text is the formatter's output. */
  want = make_def ("s3", 100, "/dst/vda.s3.qcow2");
  formatted = sm_snapshot_format (want);
  xml = sm_vm_state_read_snapshot_xml (st, "s3", &err);
  g_assert_no_error (err);
  g_assert_cmpstr (xml, ==, formatted);

  /* Saving again replaces. */
  save (st, "s1", 300, NULL);
  g_clear_pointer (&names, g_strfreev);
  names = sm_vm_state_list_snapshots (st, &err);
  g_clear_pointer (&joined, g_free);
  joined = g_strjoinv (" ", names);
  g_assert_cmpstr (joined, ==, "s0 s3 s2 s1");

  /* Unknown snapshots. */
  g_clear_pointer (&def, sm_snapshot_def_free);
  def = sm_vm_state_load_snapshot (st, "nope", &err);
  g_assert_null (def);
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_cmpstr (err->message, ==,
                   "snapshot 'nope' not found for VM 127.0.0.1:6000 (its "
                   "snapshots: s0, s1, s2, s3; see 'snapmig list')");
  g_clear_error (&err);
  g_clear_pointer (&xml, g_free);
  xml = sm_vm_state_read_snapshot_xml (st, "nope", &err);
  g_assert_null (xml);
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_clear_error (&err);
  g_assert_false (sm_vm_state_delete_snapshot (st, "nope", &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_cmpstr (err->message, ==,
                   "snapshot 'nope' not found for VM 127.0.0.1:6000 (its "
                   "snapshots: s0, s1, s2, s3; see 'snapmig list')");
  g_clear_error (&err);
  def = sm_vm_state_load_snapshot (other, "s1", &err);
  g_assert_null (def);
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_clear_error (&err);

  /* current */
  current = sm_vm_state_get_current (st, &err);
  g_assert_no_error (err);
  g_assert_null (current);
  g_assert_false (sm_vm_state_set_current (st, "nope", &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_clear_error (&err);
  g_assert_true (sm_vm_state_set_current (st, "s3", &err));
  g_assert_no_error (err);
  current = sm_vm_state_get_current (st, &err);
  g_assert_cmpstr (current, ==, "s3");
  g_clear_pointer (&current, g_free);
  current = sm_vm_state_get_current (other, &err);
  g_assert_null (current);

  /* A snapshot whose move runs is not deleted silently... */
  g_assert_false (sm_vm_state_delete_snapshot_checked (st, "s3", false, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_BUSY);
  g_assert_nonnull (strstr (err->message, "'s3'"));
  g_assert_nonnull (strstr (err->message, "vda"));
  g_assert_nonnull (strstr (err->message, "snapmig pivot"));
  g_clear_error (&err);
  current = sm_vm_state_get_current (st, &err);
  g_assert_cmpstr (current, ==, "s3");
  g_clear_pointer (&current, g_free);
  /* ...but is with metadata_only, and `current` goes with it. */
  g_assert_true (sm_vm_state_delete_snapshot_checked (st, "s3", true, &err));
  g_assert_no_error (err);
  current = sm_vm_state_get_current (st, &err);
  g_assert_no_error (err);
  g_assert_null (current);
  g_assert_false (sm_vm_state_delete_snapshot_checked (st, "s3", false, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_clear_error (&err);

  /* Deleting another snapshot leaves `current` alone. */
  g_assert_true (sm_vm_state_set_current (st, "s2", &err));
  g_assert_true (sm_vm_state_delete_snapshot_checked (st, "s1", false, &err));
  g_assert_no_error (err);
  current = sm_vm_state_get_current (st, &err);
  g_assert_cmpstr (current, ==, "s2");
  g_clear_pointer (&current, g_free);
  g_assert_true (sm_vm_state_set_current (st, NULL, &err));
  g_assert_true (sm_vm_state_set_current (st, NULL, &err));
  current = sm_vm_state_get_current (st, &err);
  g_assert_no_error (err);
  g_assert_null (current);

  g_clear_pointer (&names, g_strfreev);
  names = sm_vm_state_list_snapshots (st, &err);
  g_clear_pointer (&joined, g_free);
  joined = g_strjoinv (" ", names);
  g_assert_cmpstr (joined, ==, "s0 s2");
  /* Nothing but snapshots is left: deleting s1 also removed the temporary
   * file planted above, which a writer of s1.xml killed mid-write would
   * leave. */
  listing = dir_listing (snapdir);
  g_assert_cmpstr (listing, ==, "s0.xml s2.xml");
}

/* A file copied by hand under another name is not taken for that snapshot;
 * a broken file makes `list` fail naming it rather than hide it. */
static void
test_snapshot_file_mismatch (void)
{
  g_autofree char *dir = case_dir ("mismatch");
  g_autoptr(SmVmState) st = open_state (dir, "127.0.0.1:6100");
  g_autofree char *snapdir = g_build_filename (sm_vm_state_dir (st),
                                               "snapshots", NULL);
  g_autofree char *s1 = g_build_filename (snapdir, "s1.xml", NULL);
  g_autofree char *s9 = g_build_filename (snapdir, "s9.xml", NULL);
  g_autofree char *bad = g_build_filename (snapdir, "bad.xml", NULL);
  g_autofree char *text = NULL;
  g_autoptr(SmSnapshotDef) def = NULL;
  g_autoptr(GError) err = NULL;
  g_auto(GStrv) names = NULL;

  save (st, "s1", 1, NULL);
  g_assert_true (g_file_get_contents (s1, &text, NULL, NULL));
  g_assert_true (g_file_set_contents (s9, text, -1, NULL));
  def = sm_vm_state_load_snapshot (st, "s9", &err);
  g_assert_null (def);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_assert_nonnull (strstr (err->message, "s9.xml"));
  g_clear_error (&err);
  g_assert_cmpint (g_unlink (s9), ==, 0);

  g_assert_true (g_file_set_contents (bad, "<domainsnapshot>", -1, NULL));
  names = sm_vm_state_list_snapshots (st, &err);
  g_assert_null (names);
  g_assert_nonnull (err);
  g_assert_nonnull (strstr (err->message, "bad.xml"));
  g_clear_error (&err);
  /* It can still be removed. */
  g_assert_false (sm_vm_state_delete_snapshot_checked (st, "bad", false, &err));
  g_assert_nonnull (strstr (err->message, "--metadata-only"));
  g_clear_error (&err);
  g_assert_true (sm_vm_state_delete_snapshot_checked (st, "bad", true, &err));
  g_assert_no_error (err);
}

static void
test_bad_names (void)
{
  g_autofree char *dir = case_dir ("names");
  g_autoptr(SmVmState) st = open_state (dir, "127.0.0.1:6200");
  g_autofree char *longest = g_strnfill (200, 'n');
  g_autofree char *too_long = g_strnfill (201, 'n');
  const char *bad[] = { "", "a/b", "../escape", ".hidden", ".", "..",
                        "line\nbreak", too_long };
  g_autoptr(GError) err = NULL;
  g_auto(GStrv) names = NULL;
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr(SmSnapshotDef) def = make_def ("x", 1, NULL);
    g_autoptr(SmSnapshotDef) loaded = NULL;

    g_free (def->name);
    def->name = g_strdup (bad[i]);
    g_assert_false (sm_vm_state_save_snapshot (st, def, &err));
    g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
    if (*bad[i] && bad[i] != too_long)
      g_assert_nonnull (strstr (err->message, bad[i][0] == 'l' ? "line"
                                                                : bad[i]));
    g_clear_error (&err);
    loaded = sm_vm_state_load_snapshot (st, bad[i], &err);
    g_assert_null (loaded);
    g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
    g_clear_error (&err);
    g_assert_false (sm_vm_state_delete_snapshot (st, bad[i], &err));
    g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
    g_clear_error (&err);
    g_assert_false (sm_vm_state_set_current (st, bad[i], &err));
    g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
    g_clear_error (&err);
  }
  save (st, longest, 1, NULL);
  save (st, "with space and ünïcode", 2, NULL);
  names = sm_vm_state_list_snapshots (st, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (g_strv_length (names), ==, 2);
  g_assert_cmpstr (names[0], ==, longest);
  g_assert_cmpstr (names[1], ==, "with space and ünïcode");
}

int
main (int argc, char **argv)
{
  int ret;

  g_test_init (&argc, &argv, NULL);
  tmp_top = sm_test_tmpdir ();
  g_test_add_func ("/state/default-dir", test_default_dir);
  g_test_add_func ("/state/remove-stale-temps", test_remove_stale_temps);
  g_test_add_func ("/state/key", test_key);
  g_test_add_func ("/state/open-empty-address", test_open_empty_address);
  g_test_add_func ("/state/lock-between-processes",
                   test_lock_between_processes);
  g_test_add_func ("/state/lock-release", test_lock_release);
  g_test_add_func ("/state/atomic-write", test_atomic_write);
  g_test_add_func ("/state/atomic-write-short", test_atomic_write_short);
  g_test_add_func ("/state/snapshots", test_snapshots);
  g_test_add_func ("/state/snapshot-file-mismatch",
                   test_snapshot_file_mismatch);
  g_test_add_func ("/state/bad-names", test_bad_names);
  ret = g_test_run ();
  g_free (tmp_top);
  return ret;
}
