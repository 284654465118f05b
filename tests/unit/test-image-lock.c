/* Unit tests for lib/image-lock: the lock probe against locks taken the way
 * QEMU takes them (a child process holding OFD locks) and against a real
 * QEMU holding its chain, the holder named from /proc, snapmig's own
 * exclusive lock refusing QEMU, and the peer PID of a QMP socket. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "image-lock.h"
#include "layer-copy.h"

/* A child that opens PATH and, with LOCK_BYTE >= 0, takes a shared OFD lock
 * on that byte as QEMU does, then waits until its pipe closes.  Returns its
 * PID once the lock is taken; *PIPE_W is the pipe to close to end it. */
static pid_t
holder_start (const char *path, int lock_byte, int *pipe_w)
{
  int ready[2], hold[2];
  pid_t pid;
  char c;

  g_assert_cmpint (pipe (ready), ==, 0);
  g_assert_cmpint (pipe (hold), ==, 0);
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0) {
    int fd = open (path, O_RDONLY);
    struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET,
                        .l_start = lock_byte, .l_len = 1 };

    close (ready[0]);
    close (hold[1]);
    if (fd < 0 || (lock_byte >= 0 && fcntl (fd, F_OFD_SETLK, &fl) < 0))
      _exit (1);
    if (write (ready[1], "x", 1) != 1)
      _exit (1);
    while (read (hold[0], &c, 1) > 0)
      ;
    _exit (0);
  }
  close (ready[1]);
  close (hold[0]);
  g_assert_cmpint (read (ready[0], &c, 1), ==, 1);
  close (ready[0]);
  *pipe_w = hold[1];
  return pid;
}

static void
holder_stop (pid_t pid, int pipe_w)
{
  int status;

  close (pipe_w);
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
}

static bool
holders_have (GPtrArray *holders, pid_t pid, bool locks)
{
  guint i;

  for (i = 0; i < holders->len; i++) {
    const SmImageHolder *h = holders->pdata[i];

    if (h->pid == pid)
      return h->locks == locks;
  }
  return false;
}

static void
test_probe_child (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "img", NULL);
  g_autofree char *pid_s = NULL;
  g_autofree char *who = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(GPtrArray) holders = NULL;
  bool locked = true;
  pid_t pid;
  int w;

  g_assert_true (sm_test_create_raw (path, 1 << 20));
  g_assert_true (sm_image_lock_probe (path, &locked, &err));
  g_assert_false (locked);
  g_assert_true (sm_image_check_unlocked (path, 0, &err));

  /* Open without a lock: not locked, but seen as having it open. */
  pid = holder_start (path, -1, &w);
  g_assert_true (sm_image_lock_probe (path, &locked, &err));
  g_assert_false (locked);
  holders = sm_image_holders (path, -1);
  g_assert_true (holders_have (holders, pid, false));
  g_clear_pointer (&holders, g_ptr_array_unref);
  holder_stop (pid, w);

  /* A shared lock on byte 201 (QEMU: "I do not share write"). */
  pid = holder_start (path, 201, &w);
  g_assert_true (sm_image_lock_probe (path, &locked, &err));
  g_assert_true (locked);
  holders = sm_image_holders (path, -1);
  g_assert_true (holders_have (holders, pid, true));
  g_clear_pointer (&holders, g_ptr_array_unref);
  pid_s = g_strdup_printf ("(pid %d)", (int) pid);
  who = sm_image_holders_describe (path, -1, 0);
  g_assert_nonnull (strstr (who, pid_s));
  g_assert_false (sm_image_check_unlocked (path, 0, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_IN_USE);
  g_assert_nonnull (strstr (err->message, path));
  g_assert_nonnull (strstr (err->message, pid_s));
  g_clear_error (&err);
  {
    int fd = open (path, O_RDWR);

    g_assert_cmpint (fd, >=, 0);
    g_assert_false (sm_image_lock_exclusive (fd, path, &err));
    g_assert_error (err, SM_ERROR, SM_ERROR_IN_USE);
    g_assert_nonnull (strstr (err->message, pid_s));
    g_clear_error (&err);
    close (fd);
  }
  holder_stop (pid, w);

  /* A lock outside QEMU's bytes is not an image lock. */
  pid = holder_start (path, 0, &w);
  g_assert_true (sm_image_lock_probe (path, &locked, &err));
  g_assert_false (locked);
  holder_stop (pid, w);

  /* Gone: free again; a missing file is free. */
  g_assert_true (sm_image_lock_probe (path, &locked, &err));
  g_assert_false (locked);
  g_assert_cmpint (unlink (path), ==, 0);
  g_assert_true (sm_image_lock_probe (path, &locked, &err));
  g_assert_false (locked);
}

static void
test_qemu (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *base = g_build_filename (dir, "base.qcow2", NULL);
  g_autofree char *top = g_build_filename (dir, "top.qcow2", NULL);
  g_autofree char *free_img = g_build_filename (dir, "free.qcow2", NULL);
  g_autofree char *drive = NULL;
  g_autofree char *pid_s = NULL;
  g_autofree char *who = NULL;
  g_autofree char *out = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(SmTestVm) vm = NULL;
  const char *drives[2] = { NULL, NULL };
  SmTestVmOptions opts = { 0 };
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  bool locked;
  pid_t peer = 0;
  g_autofree char *qemu = g_find_program_in_path ("qemu-system-x86_64");
  int fd, sock;

  if (!qemu) {
    g_test_skip ("qemu-system-x86_64 missing");
    return;
  }
  g_assert_true (sm_test_create_qcow2 (base, 1 << 20, NULL, NULL));
  g_assert_true (sm_test_create_qcow2 (top, 0, "base.qcow2", "qcow2"));
  g_assert_true (sm_test_create_qcow2 (free_img, 1 << 20, NULL, NULL));
  drive = g_strdup_printf ("file=%s,if=none,id=drive0,format=qcow2", top);
  drives[0] = drive;
  opts.dir = dir;
  opts.name = "vm";
  opts.drives = drives;
  opts.no_connect = true;
  vm = sm_test_vm_start_full (&opts);
  g_assert_nonnull (vm);
  pid_s = g_strdup_printf ("(pid %d)", (int) sm_test_vm_pid (vm));

  /* The active layer and its read-only backing file are both locked. */
  g_assert_true (sm_image_lock_probe (top, &locked, &err));
  g_assert_true (locked);
  g_assert_true (sm_image_lock_probe (base, &locked, &err));
  g_assert_true (locked);
  g_assert_true (sm_image_lock_probe (free_img, &locked, &err));
  g_assert_false (locked);
  who = sm_image_holders_describe (base, -1, sm_test_vm_pid (vm));
  g_assert_nonnull (strstr (who, "the VM being migrated"));
  g_assert_nonnull (strstr (who, pid_s));
  g_assert_false (sm_image_check_unlocked (base, 0, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_IN_USE);
  g_assert_nonnull (strstr (err->message, "qemu-system-x86_64 " ));
  g_assert_nonnull (strstr (err->message, pid_s));
  g_clear_error (&err);

  /* snapmig's exclusive lock makes QEMU's tools refuse the image. */
  fd = open (free_img, O_RDWR);
  g_assert_cmpint (fd, >=, 0);
  g_assert_true (sm_image_lock_exclusive (fd, free_img, &err));
  {
    const char *argv[] = { "qemu-img", "info", free_img, NULL };

    g_assert_false (sm_test_run (argv, &out, true));
    g_assert_nonnull (strstr (out, "lock"));
  }
  close (fd);
  {
    const char *argv[] = { "qemu-img", "info", free_img, NULL };

    g_assert_true (sm_test_run (argv, NULL, false));
  }

  /* The QMP socket's peer is QEMU. */
  sock = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  g_assert_cmpint (sock, >=, 0);
  g_strlcpy (addr.sun_path, sm_test_vm_socket (vm), sizeof addr.sun_path);
  g_assert_cmpint (connect (sock, (struct sockaddr *) &addr, sizeof addr), ==,
                   0);
  g_assert_true (sm_socket_peer_pid (sock, &peer, &err));
  g_assert_cmpint (peer, ==, sm_test_vm_pid (vm));
  close (sock);
  g_assert_cmpint (sm_unix_socket_server_pid (sm_test_vm_socket (vm)), ==,
                   sm_test_vm_pid (vm));
  g_assert_cmpint (sm_unix_socket_server_pid (free_img), ==, 0);
  g_assert_cmpint (sm_unix_socket_server_pid ("127.0.0.1:4444"), ==, 0);
}

/* The copy of a layer refuses a destination another process holds (QEMU's
 * locks) and leaves it as it was; a destination that already holds the
 * layer byte for byte is not rewritten (same inode, same mtime); any other
 * destination is rewritten. */
static void
test_layer_copy (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (dir, "src.raw", NULL);
  g_autofree char *dst = g_build_filename (dir, "dst.raw", NULL);
  g_autofree char *before = NULL, *after = NULL, *pid_s = NULL;
  g_autoptr(SmLayerCopy) c = NULL;
  g_autoptr(GError) err = NULL;
  struct stat st1, st2;
  gsize len1, len2;
  pid_t pid;
  int w;

  g_assert_true (sm_test_create_raw (src, 1 << 20));
  {
    const char *argv[] = { "qemu-io", "-f", "raw", "-c",
                           "write -P 0x5a 4096 65536", src, NULL };

    g_assert_true (sm_test_run (argv, NULL, false));
  }
  g_assert_true (sm_test_create_raw (dst, 1 << 20));
  {
    const char *argv[] = { "qemu-io", "-f", "raw", "-c",
                           "write -P 0x77 0 65536", dst, NULL };

    g_assert_true (sm_test_run (argv, NULL, false));
  }
  c = sm_layer_copy_new ("vda", src, dst, SM_IMAGE_FORMAT_RAW, NULL,
                         SM_IMAGE_FORMAT_LAST);

  /* Held (a shared lock on 100, as QEMU's read permission): refused. */
  g_assert_true (g_file_get_contents (dst, &before, &len1, NULL));
  pid = holder_start (dst, 100, &w);
  pid_s = g_strdup_printf ("(pid %d)", (int) pid);
  g_assert_false (sm_layer_copy_run (c, NULL, NULL, &err));
  g_assert_nonnull (err);
  g_assert_nonnull (strstr (err->message, dst));
  g_assert_nonnull (strstr (err->message, "in use"));
  g_assert_nonnull (strstr (err->message, pid_s));
  g_clear_error (&err);
  holder_stop (pid, w);
  g_assert_true (g_file_get_contents (dst, &after, &len2, NULL));
  g_assert_cmpmem (before, len1, after, len2);
  g_clear_pointer (&after, g_free);

  /* Free and different: rewritten. */
  g_assert_true (sm_layer_copy_run (c, NULL, NULL, &err));
  g_assert_no_error (err);
  {
    const char *argv[] = { "cmp", src, dst, NULL };

    g_assert_true (sm_test_run (argv, NULL, false));
  }

  /* Already identical: not rewritten. */
  g_assert_cmpint (stat (dst, &st1), ==, 0);
  g_usleep (20000);
  g_assert_true (sm_layer_copy_run (c, NULL, NULL, &err));
  g_assert_no_error (err);
  g_assert_cmpint (stat (dst, &st2), ==, 0);
  g_assert_cmpuint (st1.st_ino, ==, st2.st_ino);
  g_assert_cmpint (st1.st_mtim.tv_sec, ==, st2.st_mtim.tv_sec);
  g_assert_cmpint (st1.st_mtim.tv_nsec, ==, st2.st_mtim.tv_nsec);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/image-lock/probe-child", test_probe_child);
  g_test_add_func ("/image-lock/qemu", test_qemu);
  g_test_add_func ("/image-lock/layer-copy", test_layer_copy);
  return g_test_run ();
}
