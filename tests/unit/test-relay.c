/* Unit tests for lib/relay.c: two engines joined by a socketpair (or two
 * pipes), pumped by one thread as `snapmig tunnel` and `snapmig relay`
 * pump theirs, with real unix-socket servers (echo, count, source) in
 * threads of their own: many channels at once, 64 MiB behind a reader that
 * does not read while another channel keeps flowing, half close, OPEN to a
 * missing path, LISTEN.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "harness.h"
#include "relay.h"

static char *tmp_top;

/* ---- data ---------------------------------------------------------------- */

/* The pattern byte at offset I of stream SEED. */
static unsigned char
pat (unsigned seed, uint64_t i)
{
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;

  return (unsigned char) (x >> 29);
}

static void
fill (unsigned seed, uint64_t off, unsigned char *buf, size_t n)
{
  for (size_t i = 0; i < n; i++)
    buf[i] = pat (seed, off + i);
}

static bool
write_all (int fd, const void *p, size_t n)
{
  while (n) {
    ssize_t w = send (fd, p, n, MSG_NOSIGNAL);

    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return false;
    p = (const char *) p + w;
    n -= w;
  }
  return true;
}

/* Reads FD to end of file (10 s at most per read), checking that the bytes
 * are stream SEED's pattern.  Returns the byte count, or -1 on a mismatch
 * or a timeout. */
static int64_t
read_check (int fd, unsigned seed)
{
  unsigned char buf[65536], want[65536];
  uint64_t off = 0;

  for (;;) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    ssize_t n;

    if (poll (&p, 1, 10000) <= 0)
      return -1;
    n = read (fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    if (n == 0)
      return off;
    fill (seed, off, want, n);
    if (memcmp (buf, want, n) != 0) {
      g_printerr ("# stream %u differs near offset %" G_GUINT64_FORMAT "\n",
                  seed, off);
      return -1;
    }
    off += n;
  }
}

static int
connect_to (const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpuint (strlen (path), <, sizeof sa.sun_path);
  strcpy (sa.sun_path, path);
  g_assert_cmpint (connect (fd, (struct sockaddr *) &sa, sizeof sa), ==, 0);
  return fd;
}

/* ---- servers -------------------------------------------------------------- */

typedef enum { ECHO, COUNT, SOURCE } ServerKind;

typedef struct {
  ServerKind kind;
  int fd;
  GThread *thread;
  GMutex lock;
  GPtrArray *handlers;         /* GThread */
  gint64 source_bytes;         /* SOURCE: how many to write */
  gint written;                /* SOURCE: MiB written so far (atomic) */
} Server;

typedef struct {
  Server *s;
  int fd;
} Conn;

static gpointer
handle (gpointer data)
{
  Conn *c = data;
  char buf[65536];
  int64_t total = 0;
  ssize_t n;

  switch (c->s->kind) {
  case ECHO:
    while ((n = read (c->fd, buf, sizeof buf)) > 0)
      if (!write_all (c->fd, buf, n))
        break;
    shutdown (c->fd, SHUT_WR);
    break;
  case COUNT: {
    g_autofree char *line = NULL;

    while ((n = read (c->fd, buf, sizeof buf)) > 0)
      total += n;
    line = g_strdup_printf ("%" G_GINT64_FORMAT "\n", total);
    write_all (c->fd, line, strlen (line));
    break;
  }
  case SOURCE:
    while (total < c->s->source_bytes) {
      n = MIN ((int64_t) sizeof buf, c->s->source_bytes - total);
      fill (7, total, (unsigned char *) buf, n);
      if (!write_all (c->fd, buf, n))
        break;
      total += n;
      g_atomic_int_set (&c->s->written, (int) (total >> 20));
    }
    break;
  }
  close (c->fd);
  g_free (c);
  return NULL;
}

static gpointer
serve (gpointer data)
{
  Server *s = data;
  int fd;

  while ((fd = accept4 (s->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
    Conn *c = g_new0 (Conn, 1);

    c->s = s;
    c->fd = fd;
    g_mutex_lock (&s->lock);
    g_ptr_array_add (s->handlers, g_thread_new ("conn", handle, c));
    g_mutex_unlock (&s->lock);
  }
  return NULL;
}

static Server *
server_start (const char *path, ServerKind kind)
{
  g_autoptr(GError) err = NULL;
  Server *s = g_new0 (Server, 1);
  int fl;

  s->kind = kind;
  s->fd = sm_relay_unix_listen (path, &err);
  g_assert_no_error (err);
  fl = fcntl (s->fd, F_GETFL);
  fcntl (s->fd, F_SETFL, fl & ~O_NONBLOCK);
  g_mutex_init (&s->lock);
  s->handlers = g_ptr_array_new ();
  s->thread = g_thread_new ("server", serve, s);
  return s;
}

/* Stops accepting, waits for every connection's thread. */
static void
server_stop (Server *s)
{
  shutdown (s->fd, SHUT_RDWR);   /* wakes accept() */
  g_thread_join (s->thread);
  close (s->fd);
  for (guint i = 0; i < s->handlers->len; i++)
    g_thread_join (g_ptr_array_index (s->handlers, i));
  g_ptr_array_free (s->handlers, TRUE);
  g_mutex_clear (&s->lock);
  g_free (s);
}

/* ---- two engines and their pump ------------------------------------------ */

typedef struct {
  SmRelay *a, *b;              /* a: the odd (source) side */
  int fds[4];
  GThread *thread;
  gint stop;
  GMutex lock;
  GCond cond;
  void (*call) (gpointer);     /* run by the pump between rounds */
  gpointer call_data;
  gint failed;
} Pair;

static gpointer
pump (gpointer data)
{
  Pair *p = data;
  struct pollfd fds[256];

  while (!g_atomic_int_get (&p->stop)) {
    size_t na, nb;
    GError *err = NULL;

    g_mutex_lock (&p->lock);
    if (p->call) {
      p->call (p->call_data);
      p->call = NULL;
      g_cond_broadcast (&p->cond);
    }
    g_mutex_unlock (&p->lock);
    g_assert_cmpuint (sm_relay_nfds_max (p->a) + sm_relay_nfds_max (p->b),
                      <=, G_N_ELEMENTS (fds));
    na = sm_relay_pollfds (p->a, fds, G_N_ELEMENTS (fds));
    nb = sm_relay_pollfds (p->b, fds + na, G_N_ELEMENTS (fds) - na);
    if (poll (fds, na + nb, 20) < 0)
      continue;
    if (!sm_relay_dispatch (p->a, fds, na, &err) ||
        !sm_relay_dispatch (p->b, fds + na, nb, &err)) {
      g_printerr ("# transport ended: %s\n", err ? err->message : "EOF");
      g_clear_error (&err);
      g_atomic_int_set (&p->failed, 1);
      break;
    }
  }
  return NULL;
}

/* Runs FN (DATA) in the pump's thread, between two rounds. */
static void
pair_call (Pair *p, void (*fn) (gpointer), gpointer data)
{
  g_mutex_lock (&p->lock);
  p->call = fn;
  p->call_data = data;
  while (p->call)
    g_cond_wait (&p->cond, &p->lock);
  g_mutex_unlock (&p->lock);
}

static Pair *
pair_new (bool pipes)
{
  Pair *p = g_new0 (Pair, 1);

  if (pipes) {
    int ab[2], ba[2];

    g_assert_cmpint (pipe2 (ab, O_CLOEXEC), ==, 0);
    g_assert_cmpint (pipe2 (ba, O_CLOEXEC), ==, 0);
    p->a = sm_relay_new (ba[0], ab[1], true);
    p->b = sm_relay_new (ab[0], ba[1], false);
    p->fds[0] = ab[0]; p->fds[1] = ab[1]; p->fds[2] = ba[0]; p->fds[3] = ba[1];
  } else {
    int sp[2];

    g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp),
                     ==, 0);
    p->a = sm_relay_new (sp[0], sp[0], true);
    p->b = sm_relay_new (sp[1], sp[1], false);
    p->fds[0] = sp[0]; p->fds[1] = sp[1]; p->fds[2] = p->fds[3] = -1;
  }
  g_mutex_init (&p->lock);
  g_cond_init (&p->cond);
  p->thread = g_thread_new ("pump", pump, p);
  return p;
}

static void
pair_free (Pair *p)
{
  g_atomic_int_set (&p->stop, 1);
  g_thread_join (p->thread);
  g_assert_cmpint (g_atomic_int_get (&p->failed), ==, 0);
  sm_relay_free (p->a);
  sm_relay_free (p->b);
  for (int i = 0; i < 4; i++)
    if (p->fds[i] >= 0)
      close (p->fds[i]);
  g_mutex_clear (&p->lock);
  g_cond_clear (&p->cond);
  g_free (p);
}

typedef struct {
  Pair *p;
  SmRelay *side;
  int fd;
  const char *target;
  const char *path;
  uint32_t id;
  int result;
  char *message;
  unsigned channels;
  int64_t bytes;
} Req;

static void
do_add_listener (gpointer data)
{
  Req *q = data;

  sm_relay_add_listener (q->side, q->fd, q->target);
}

static void
do_listen (gpointer data)
{
  Req *q = data;

  q->id = sm_relay_listen (q->side, q->path, q->target);
}

static void
do_listen_result (gpointer data)
{
  Req *q = data;

  q->result = sm_relay_listen_result (q->side, q->id, &q->message);
}

static void
do_stats (gpointer data)
{
  Req *q = data;

  q->channels = sm_relay_channels (q->p->a) + sm_relay_channels (q->p->b);
  q->bytes = sm_relay_bytes (q->p->a);
}

/* Waits (5 s at most) for the answer to the LISTEN request Q. */
static void
listen_wait (Pair *p, Req *q)
{
  for (int i = 0; i < 500; i++) {
    pair_call (p, do_listen_result, q);
    if (q->result != 0)
      return;
    g_usleep (10000);
  }
}

/* A listener at DIR/NAME on side A whose connections reach TARGET on B;
 * returns its fd (the test closes it after pair_free). */
static int
forward (Pair *p, const char *dir, const char *name, const char *target,
         char **path)
{
  g_autoptr(GError) err = NULL;
  Req q = { .p = p, .side = p->a, .target = target };

  *path = g_build_filename (dir, name, NULL);
  q.fd = sm_relay_unix_listen (*path, &err);
  g_assert_no_error (err);
  pair_call (p, do_add_listener, &q);
  return q.fd;
}

/* Waits (10 s at most) until no channel is open on either side. */
static void
wait_no_channels (Pair *p)
{
  Req q = { .p = p };

  for (int i = 0; i < 500; i++) {
    pair_call (p, do_stats, &q);
    if (q.channels == 0)
      return;
    g_usleep (20000);
  }
  g_assert_cmpuint (q.channels, ==, 0);
}

static char *
case_dir (const char *name)
{
  char *dir = g_build_filename (tmp_top, name, NULL);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  return dir;
}

/* ---- cases ---------------------------------------------------------------- */

typedef struct {
  int fd;
  unsigned seed;
  size_t len;
} Writer;

static gpointer
writer (gpointer data)
{
  Writer *w = data;
  unsigned char buf[32768];
  size_t off = 0;

  while (off < w->len) {
    size_t n = MIN (sizeof buf, w->len - off);

    fill (w->seed, off, buf, n);
    if (!write_all (w->fd, buf, n))
      break;
    off += n;
  }
  shutdown (w->fd, SHUT_WR);
  return NULL;
}

/* 24 connections at once through one forward to an echo server: each
 * stream comes back whole and its own, then every channel is gone. */
static void
many_channels (bool pipes)
{
  g_autofree char *dir = case_dir (pipes ? "many-pipes" : "many");
  g_autofree char *echo = g_build_filename (dir, "echo.sock", NULL);
  g_autofree char *fwd = NULL;
  Server *s = server_start (echo, ECHO);
  Pair *p = pair_new (pipes);
  int lfd = forward (p, dir, "fwd.sock", echo, &fwd);
  Writer w[24];
  GThread *t[24];
  Req q = { .p = p };

  for (unsigned i = 0; i < G_N_ELEMENTS (w); i++) {
    w[i].fd = connect_to (fwd);
    w[i].seed = i + 1;
    w[i].len = 300000 + i * 77777;
    t[i] = g_thread_new ("writer", writer, &w[i]);
  }
  /* Read them in order: the later streams wait in their own windows. */
  for (unsigned i = 0; i < G_N_ELEMENTS (w); i++) {
    g_assert_cmpint (read_check (w[i].fd, w[i].seed), ==, (int64_t) w[i].len);
    g_thread_join (t[i]);
    close (w[i].fd);
  }
  wait_no_channels (p);
  pair_call (p, do_stats, &q);
  /* every byte counted once each way on A's side */
  {
    int64_t sum = 0;

    for (unsigned i = 0; i < G_N_ELEMENTS (w); i++)
      sum += 2 * (int64_t) w[i].len;
    g_assert_cmpint (q.bytes, ==, sum);
  }
  pair_free (p);
  close (lfd);
  server_stop (s);
}

static void test_many_channels (void) { many_channels (false); }
static void test_many_channels_pipes (void) { many_channels (true); }

/* 64 MiB from a source whose reader does not read: the source stops after
 * about a window (plus the sockets' buffers) while an echo of 8 MiB on
 * another channel completes; then the 64 MiB arrive whole. */
static void
test_flow_control (void)
{
  g_autofree char *dir = case_dir ("flow");
  g_autofree char *echo = g_build_filename (dir, "echo.sock", NULL);
  g_autofree char *src = g_build_filename (dir, "src.sock", NULL);
  g_autofree char *fwd_echo = NULL, *fwd_src = NULL;
  Server *se = server_start (echo, ECHO);
  Server *ss = server_start (src, SOURCE);
  Pair *p = pair_new (false);
  int l1 = forward (p, dir, "e.sock", echo, &fwd_echo);
  int l2 = forward (p, dir, "s.sock", src, &fwd_src);
  Writer w = { .seed = 3, .len = 8 << 20 };
  GThread *t;
  int slow;

  ss->source_bytes = (int64_t) 64 << 20;
  slow = connect_to (fwd_src);
  /* the source fills what the window and the buffers hold, then waits */
  for (int i = 0; i < 50 && g_atomic_int_get (&ss->written) < 1; i++)
    g_usleep (20000);
  g_assert_cmpint (g_atomic_int_get (&ss->written), >=, 1);

  w.fd = connect_to (fwd_echo);
  t = g_thread_new ("writer", writer, &w);
  g_assert_cmpint (read_check (w.fd, w.seed), ==, (int64_t) w.len);
  g_thread_join (t);
  close (w.fd);
  /* the slow stream held at most a window and the sockets' buffers */
  g_assert_cmpint (g_atomic_int_get (&ss->written), <=, 8);

  g_assert_cmpint (read_check (slow, 7), ==, (int64_t) 64 << 20);
  close (slow);
  wait_no_channels (p);
  pair_free (p);
  close (l1);
  close (l2);
  server_stop (se);
  server_stop (ss);
}

/* The client shuts its write side; the server reads to end of file and
 * only then answers, through the half-closed channel. */
static void
test_half_close (void)
{
  g_autofree char *dir = case_dir ("half");
  g_autofree char *count = g_build_filename (dir, "count.sock", NULL);
  g_autofree char *fwd = NULL;
  Server *s = server_start (count, COUNT);
  Pair *p = pair_new (false);
  int lfd = forward (p, dir, "fwd.sock", count, &fwd);
  int fd = connect_to (fwd);
  unsigned char buf[100000];
  char answer[64] = "";
  size_t got = 0;
  ssize_t n;

  fill (9, 0, buf, sizeof buf);
  g_assert_true (write_all (fd, buf, sizeof buf));
  g_assert_cmpint (shutdown (fd, SHUT_WR), ==, 0);
  while ((n = read (fd, answer + got, sizeof answer - 1 - got)) > 0)
    got += n;
  g_assert_cmpint (n, ==, 0);
  g_assert_cmpstr (answer, ==, "100000\n");
  close (fd);
  wait_no_channels (p);
  pair_free (p);
  close (lfd);
  server_stop (s);
}

/* OPEN to a path where nothing listens: FAILED, and the client that
 * connected sees end of file at once. */
static void
test_open_failed (void)
{
  g_autofree char *dir = case_dir ("open-failed");
  g_autofree char *missing = g_build_filename (dir, "missing.sock", NULL);
  g_autofree char *fwd = NULL;
  Pair *p = pair_new (false);
  int lfd = forward (p, dir, "fwd.sock", missing, &fwd);
  int fd = connect_to (fwd);
  struct pollfd pf = { .fd = fd, .events = POLLIN };
  char c;

  g_assert_cmpint (poll (&pf, 1, 5000), ==, 1);
  g_assert_cmpint (read (fd, &c, 1), ==, 0);
  close (fd);
  wait_no_channels (p);
  pair_free (p);
  close (lfd);
}

/* LISTEN: B listens on a path of A's asking and each connection there
 * reaches A's echo server (the tunnel's "reverse"); a LISTEN where the
 * directory is missing is refused with the path in the message. */
static void
test_listen (void)
{
  g_autofree char *dir = case_dir ("listen");
  g_autofree char *echo = g_build_filename (dir, "echo.sock", NULL);
  g_autofree char *rev = g_build_filename (dir, "rev.sock", NULL);
  g_autofree char *bad = g_build_filename (dir, "no/such/dir.sock", NULL);
  Server *s = server_start (echo, ECHO);
  Pair *p = pair_new (true);
  Req q = { .p = p, .path = rev, .target = echo };
  Req qb = { .p = p, .path = bad, .target = echo };
  Writer w = { .seed = 11, .len = 3 << 20 };
  GThread *t;

  q.side = qb.side = p->a;
  pair_call (p, do_listen, &q);
  pair_call (p, do_listen, &qb);
  g_assert_cmpuint (q.id % 2, ==, 1);
  listen_wait (p, &q);
  g_assert_cmpint (q.result, ==, 1);
  g_assert_null (q.message);
  listen_wait (p, &qb);
  g_assert_cmpint (qb.result, ==, -1);
  g_assert_nonnull (qb.message);
  g_assert_nonnull (strstr (qb.message, bad));
  g_free (qb.message);

  w.fd = connect_to (rev);
  t = g_thread_new ("writer", writer, &w);
  g_assert_cmpint (read_check (w.fd, w.seed), ==, (int64_t) w.len);
  g_thread_join (t);
  close (w.fd);
  wait_no_channels (p);
  pair_free (p);
  /* the engine that listened removed its socket */
  g_assert_false (g_file_test (rev, G_FILE_TEST_EXISTS));
  server_stop (s);
}

/* The end of the transport ends the engine's run, and freeing it closes
 * its relayed connections: the client sees end of file. */
static void
test_transport_eof (void)
{
  g_autofree char *dir = case_dir ("eof");
  g_autofree char *echo = g_build_filename (dir, "echo.sock", NULL);
  g_autoptr(GError) err = NULL;
  Server *s = server_start (echo, ECHO);
  int sp[2], cs[2];
  SmRelay *a;
  char c;

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, sp), ==, 0);
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, cs), ==, 0);
  a = sm_relay_new (sp[0], sp[0], true);
  sm_relay_connect (a, cs[0], echo);
  close (sp[1]);               /* the peer is gone */
  g_assert_true (sm_relay_run (a, &err));
  g_assert_no_error (err);
  sm_relay_free (a);
  g_assert_cmpint (read (cs[1], &c, 1), ==, 0);
  close (cs[1]);
  close (sp[0]);
  server_stop (s);
}

/* ---- the protocol by hand ------------------------------------------------- */

/* Runs engine R alone for up to MS, or until its transport ends; false
 * then, with *ERROR set on a protocol error. */
static bool
run_for (SmRelay *r, int ms, GError **error)
{
  gint64 end = g_get_monotonic_time () + ms * 1000;
  struct pollfd fds[16];

  while (g_get_monotonic_time () < end) {
    size_t n = sm_relay_pollfds (r, fds, G_N_ELEMENTS (fds));

    poll (fds, n, 10);
    if (!sm_relay_dispatch (r, fds, n, error))
      return false;
  }
  return true;
}

static void
put_frame (int fd, int type, uint32_t id, const void *payload, size_t len)
{
  unsigned char h[SM_RELAY_HEADER] = {
    type, len >> 16, len >> 8, len, id >> 24, id >> 16, id >> 8, id };

  g_assert_true (write_all (fd, h, sizeof h));
  if (len)
    g_assert_true (write_all (fd, payload, len));
}

/* The next frame from FD (2 s at most): its type, id and payload. */
static int
get_frame (int fd, uint32_t *id, char **payload)
{
  unsigned char h[SM_RELAY_HEADER];
  size_t len, got = 0;

  while (got < sizeof h) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    ssize_t n;

    g_assert_cmpint (poll (&p, 1, 2000), ==, 1);
    n = read (fd, h + got, sizeof h - got);
    g_assert_cmpint (n, >, 0);
    got += n;
  }
  len = ((size_t) h[1] << 16) | ((size_t) h[2] << 8) | h[3];
  *id = ((uint32_t) h[4] << 24) | ((uint32_t) h[5] << 16) |
        ((uint32_t) h[6] << 8) | h[7];
  *payload = g_malloc0 (len + 1);
  for (got = 0; got < len;) {
    ssize_t n = read (fd, *payload + got, len - got);

    g_assert_cmpint (n, >, 0);
    got += n;
  }
  return h[0];
}

/* Frames written by hand to an engine: OPEN to a missing path is answered
 * FAILED naming it; LISTEN OPENED; DATA to a channel it does not know is
 * ignored; a CREDIT of the wrong size and a frame over 64 KiB end the
 * transport with an error. */
static void
test_raw_frames (void)
{
  g_autofree char *dir = case_dir ("raw");
  g_autofree char *missing = g_build_filename (dir, "missing.sock", NULL);
  g_autofree char *lpath = g_build_filename (dir, "l.sock", NULL);
  g_autofree char *listen = g_strconcat (lpath, "|/target", NULL);
  g_autoptr(GError) err = NULL;
  char *payload = NULL;
  uint32_t id = 0;
  int sp[2];
  SmRelay *b;

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, sp), ==, 0);
  b = sm_relay_new (sp[1], sp[1], false);

  put_frame (sp[0], SM_RELAY_OPEN, 1, missing, strlen (missing));
  g_assert_true (run_for (b, 50, &err));
  g_assert_cmpint (get_frame (sp[0], &id, &payload), ==, SM_RELAY_FAILED);
  g_assert_cmpuint (id, ==, 1);
  g_assert_nonnull (strstr (payload, missing));
  g_clear_pointer (&payload, g_free);

  listen[strlen (lpath)] = '\0';
  put_frame (sp[0], SM_RELAY_LISTEN, 3, listen, strlen (lpath) + 8);
  put_frame (sp[0], SM_RELAY_DATA, 99, "lost", 4);
  g_assert_true (run_for (b, 50, &err));
  g_assert_cmpint (get_frame (sp[0], &id, &payload), ==, SM_RELAY_OPENED);
  g_assert_cmpuint (id, ==, 3);
  g_clear_pointer (&payload, g_free);
  g_assert_true (g_file_test (lpath, G_FILE_TEST_EXISTS));
  g_assert_cmpuint (sm_relay_channels (b), ==, 0);

  put_frame (sp[0], SM_RELAY_CREDIT, 1, "xy", 2);
  g_assert_false (run_for (b, 200, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_IO);
  g_assert_nonnull (strstr (err->message, "CREDIT"));
  sm_relay_free (b);
  g_assert_false (g_file_test (lpath, G_FILE_TEST_EXISTS));
  close (sp[1]);
  g_clear_error (&err);

  close (sp[0]);

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, sp), ==, 0);
  b = sm_relay_new (sp[1], sp[1], false);
  {
    /* a DATA header announcing 64 KiB + 1 */
    unsigned char h[SM_RELAY_HEADER] = { SM_RELAY_DATA, 0x01, 0x00, 0x01,
                                         0, 0, 0, 1 };

    g_assert_true (write_all (sp[0], h, sizeof h));
  }
  g_assert_false (run_for (b, 200, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_IO);
  g_assert_nonnull (strstr (err->message, "DATA frame of 65537 bytes"));
  sm_relay_free (b);
  close (sp[0]);
  close (sp[1]);
}

static void
test_frame_names (void)
{
  g_assert_cmpstr (sm_relay_frame_name (SM_RELAY_OPEN), ==, "OPEN");
  g_assert_cmpstr (sm_relay_frame_name (SM_RELAY_LISTEN), ==, "LISTEN");
  g_assert_cmpstr (sm_relay_frame_name (0), ==, "?");
  g_assert_cmpstr (sm_relay_frame_name (SM_RELAY_FRAME_LAST), ==, "?");
}

int
main (int argc, char **argv)
{
  int ret;

  signal (SIGPIPE, SIG_IGN);
  g_test_init (&argc, &argv, NULL);
  tmp_top = sm_test_tmpdir ();
  g_test_add_func ("/relay/frame-names", test_frame_names);
  g_test_add_func ("/relay/many-channels", test_many_channels);
  g_test_add_func ("/relay/many-channels-pipes", test_many_channels_pipes);
  g_test_add_func ("/relay/flow-control", test_flow_control);
  g_test_add_func ("/relay/half-close", test_half_close);
  g_test_add_func ("/relay/open-failed", test_open_failed);
  g_test_add_func ("/relay/listen", test_listen);
  g_test_add_func ("/relay/transport-eof", test_transport_eof);
  g_test_add_func ("/relay/raw-frames", test_raw_frames);
  ret = g_test_run ();
  g_free (tmp_top);
  return ret;
}
