/* libsnapmig — who else uses an image (see image-lock.h). */
#include "image-lock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define DOMAIN "image-lock"

void
sm_image_holder_free (SmImageHolder *holder)
{
  if (!holder)
    return;
  g_free (holder->comm);
  g_free (holder);
}

static void
lock_range (struct flock *fl, short type)
{
  memset (fl, 0, sizeof *fl);
  fl->l_type = type;
  fl->l_whence = SEEK_SET;
  fl->l_start = SM_IMAGE_LOCK_START;
  fl->l_len = SM_IMAGE_LOCK_END - SM_IMAGE_LOCK_START + 1;
}

/* fcntl (FD, OFD_CMD, FL), or CMD (the traditional lock) on a kernel
 * without OFD locks (before 3.15), where QEMU takes traditional locks too;
 * F_GETLK reports both kinds. */
static int
lock_fcntl (int fd, int ofd_cmd, int cmd, struct flock *fl)
{
  struct flock copy = *fl;

  if (fcntl (fd, ofd_cmd, fl) == 0)
    return 0;
  if (errno != EINVAL)
    return -1;
  *fl = copy;
  return fcntl (fd, cmd, fl);
}

bool
sm_image_lock_probe_fd (int fd, const char *path, bool *locked,
                        GError **error)
{
  struct flock fl;

  /* F_OFD_GETLK reports locks of other open file descriptions, traditional
   * (POSIX) locks included; a write-lock probe conflicts with any lock.
   * It does not need FD open for writing. */
  lock_range (&fl, F_WRLCK);
  if (lock_fcntl (fd, F_OFD_GETLK, F_GETLK, &fl) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "%s: cannot check its image locks: %s", path,
                 g_strerror (errno));
    return false;
  }
  *locked = fl.l_type != F_UNLCK;
  return true;
}

bool
sm_image_lock_probe (const char *path, bool *locked, GError **error)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  bool ok;

  *locked = false;
  if (fd < 0) {
    if (errno == ENOENT)
      return true;
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "%s: cannot open to check its image locks: %s", path,
                 g_strerror (errno));
    return false;
  }
  ok = sm_image_lock_probe_fd (fd, path, locked, error);
  close (fd);
  return ok;
}

/* True when /proc/PID/fdinfo/FD lists a lock. */
static bool
fd_holds_locks (const char *pid, const char *fd)
{
  g_autofree char *path = g_strdup_printf ("/proc/%s/fdinfo/%s", pid, fd);
  g_autofree char *text = NULL;
  const char *p;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return false;
  for (p = text; p; p = strchr (p, '\n')) {
    if (*p == '\n')
      p++;
    if (g_str_has_prefix (p, "lock:"))
      return true;
  }
  return false;
}

/* The program's name: the base name of argv[0] (/proc/PID/comm is cut at
 * 15 bytes: "qemu-system-x86"), or comm when argv is unreadable. */
static char *
process_comm (const char *pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%s/cmdline", pid);
  g_autofree char *text = NULL;
  gsize len = 0;

  if (g_file_get_contents (path, &text, &len, NULL) && len > 0 && *text)
    return g_path_get_basename (text);
  g_free (path);
  g_clear_pointer (&text, g_free);
  path = g_strdup_printf ("/proc/%s/comm", pid);
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return g_strdup ("?");
  return g_strdup (g_strstrip (text));
}

static gint
holder_cmp (gconstpointer a, gconstpointer b)
{
  const SmImageHolder *x = *(SmImageHolder *const *) a;
  const SmImageHolder *y = *(SmImageHolder *const *) b;

  if (x->locks != y->locks)
    return x->locks ? -1 : 1;
  return x->pid < y->pid ? -1 : x->pid > y->pid;
}

GPtrArray *
sm_image_holders (const char *path, int fd)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (
    (GDestroyNotify) sm_image_holder_free);
  struct stat want;
  DIR *proc;
  struct dirent *e;
  pid_t self = getpid ();

  if ((fd >= 0 ? fstat (fd, &want) : stat (path, &want)) < 0)
    return out;
  proc = opendir ("/proc");
  if (!proc)
    return out;
  while ((e = readdir (proc))) {
    g_autofree char *fd_dir = NULL;
    SmImageHolder *h = NULL;
    DIR *fds;
    struct dirent *f;
    char *end;
    long pid = strtol (e->d_name, &end, 10);

    if (*end || pid <= 0 || (pid_t) pid == self)
      continue;
    fd_dir = g_strdup_printf ("/proc/%s/fd", e->d_name);
    fds = opendir (fd_dir);
    if (!fds)
      continue;
    while ((f = readdir (fds))) {
      g_autofree char *link = NULL;
      struct stat st;

      if (f->d_name[0] == '.')
        continue;
      link = g_strdup_printf ("%s/%s", fd_dir, f->d_name);
      if (stat (link, &st) < 0 || st.st_dev != want.st_dev ||
          st.st_ino != want.st_ino)
        continue;
      if (!h) {
        h = g_new0 (SmImageHolder, 1);
        h->pid = (pid_t) pid;
        h->comm = process_comm (e->d_name);
        g_ptr_array_add (out, h);
      }
      if (fd_holds_locks (e->d_name, f->d_name))
        h->locks = true;
    }
    closedir (fds);
  }
  closedir (proc);
  g_ptr_array_sort (out, holder_cmp);
  return out;
}

char *
sm_image_holders_describe (const char *path, int fd, pid_t own_pid)
{
  g_autoptr(GPtrArray) holders = sm_image_holders (path, fd);
  GString *s = g_string_new (NULL);
  bool any_locks = holders->len &&
                   ((SmImageHolder *) holders->pdata[0])->locks;
  guint i;

  for (i = 0; i < holders->len; i++) {
    const SmImageHolder *h = holders->pdata[i];

    if (any_locks && !h->locks)
      break;
    if (s->len)
      g_string_append (s, ", ");
    if (own_pid > 0 && h->pid == own_pid)
      g_string_append (s, "the VM being migrated, ");
    g_string_append_printf (s, "%s (pid %d)", h->comm, (int) h->pid);
  }
  if (!s->len)
    g_string_append (s, "another process (not found in /proc)");
  return g_string_free (s, false);
}

bool
sm_image_check_unlocked (const char *path, pid_t own_pid, GError **error)
{
  g_autofree char *who = NULL;
  bool locked;

  if (!sm_image_lock_probe (path, &locked, error))
    return false;
  if (!locked)
    return true;
  who = sm_image_holders_describe (path, -1, own_pid);
  sm_debug (DOMAIN, "%s is locked by %s", path, who);
  sm_error_set_with_object (error, SM_ERROR_IN_USE, path,
                            "%s: in use: held by %s", path, who);
  return false;
}

bool
sm_image_lock_exclusive (int fd, const char *path, GError **error)
{
  struct flock fl;

  lock_range (&fl, F_WRLCK);
  if (lock_fcntl (fd, F_OFD_SETLK, F_SETLK, &fl) < 0) {
    int saved = errno;

    if (saved == EAGAIN || saved == EACCES) {
      g_autofree char *who = sm_image_holders_describe (path, fd, 0);

      sm_error_set_with_object (error, SM_ERROR_IN_USE, path,
                                "%s: in use: held by %s", path, who);
    } else {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: cannot lock: %s", path,
                   g_strerror (saved));
    }
    return false;
  }
  return true;
}

bool
sm_socket_peer_pid (int fd, pid_t *pid, GError **error)
{
  struct ucred cred;
  socklen_t len = sizeof cred;

  if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "cannot tell the socket's peer: %s", g_strerror (errno));
    return false;
  }
  *pid = cred.pid;
  return true;
}

unsigned long
sm_unix_socket_inode (const char *path)
{
  g_autofree char *text = NULL;
  g_autofree char *real = realpath (path, NULL);
  g_auto(GStrv) lines = NULL;
  guint i;

  if (!g_file_get_contents ("/proc/net/unix", &text, NULL, NULL))
    return 0;
  lines = g_strsplit (text, "\n", -1);
  /* "Num RefCount Protocol Flags Type St Inode Path"; a listening socket
   * has __SO_ACCEPTCON (0x10000) in Flags. */
  for (i = 1; lines[i]; i++) {
    g_auto(GStrv) f = g_strsplit_set (lines[i], " ", -1);
    const char *v[8];
    guint n = 0, k;

    for (k = 0; f[k] && n < 8; k++)
      if (*f[k])
        v[n++] = f[k];
    if (n < 8 || !(g_ascii_strtoull (v[3], NULL, 16) & 0x10000))
      continue;
    if (strcmp (v[7], path) == 0 || (real && strcmp (v[7], real) == 0))
      return g_ascii_strtoull (v[6], NULL, 10);
  }
  return 0;
}

pid_t
sm_unix_socket_server_pid (const char *path)
{
  unsigned long inode;
  g_autofree char *want = NULL;
  DIR *proc;
  struct dirent *e;
  pid_t found = 0;

  if (!path || !strchr (path, '/') || !(inode = sm_unix_socket_inode (path)))
    return 0;
  want = g_strdup_printf ("socket:[%lu]", inode);
  proc = opendir ("/proc");
  if (!proc)
    return 0;
  while (!found && (e = readdir (proc))) {
    g_autofree char *fd_dir = NULL;
    DIR *fds;
    struct dirent *f;
    char *end;
    long pid = strtol (e->d_name, &end, 10);

    if (*end || pid <= 0)
      continue;
    fd_dir = g_strdup_printf ("/proc/%s/fd", e->d_name);
    fds = opendir (fd_dir);
    if (!fds)
      continue;
    while ((f = readdir (fds))) {
      g_autofree char *link = g_strdup_printf ("%s/%s", fd_dir, f->d_name);
      char target[64];
      ssize_t len = readlink (link, target, sizeof target - 1);

      if (len <= 0)
        continue;
      target[len] = '\0';
      if (strcmp (target, want) == 0) {
        found = (pid_t) pid;
        break;
      }
    }
    closedir (fds);
  }
  closedir (proc);
  return found;
}
